"""Greedy CTC decoding and character error rate, to read and score the network's output.

DeepSpeech's output has ``len(alphabet.labels) + 1`` classes per time step, the CTC
blank being the last. Greedy (best-path) decoding needs no language model, so it shows
whether the IR's logits mean the same text as TensorFlow's.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from ds2ir.config import Alphabet
from ds2ir.errors import ConfigError

__all__ = ["best_path", "cer", "greedy", "levenshtein"]


def best_path(logits: np.ndarray, n_classes: int) -> List[int]:
    """Label indices of the best path: argmax per step, repeats merged, blanks dropped.

    ``logits`` is ``[T, n_classes]`` or ``[T, 1, n_classes]`` (the graph's batch axis);
    softmaxed or not makes no difference to the argmax.
    """
    scores = np.asarray(logits)
    if scores.ndim == 3 and scores.shape[1] == 1:
        scores = scores[:, 0, :]
    if scores.ndim != 2 or scores.shape[1] != n_classes:
        raise ConfigError(
            f"the network output has shape {scores.shape}, but the alphabet needs [T, {n_classes}] "
            f"({n_classes - 1} labels + blank); use the alphabet the model was trained with."
        )
    blank = n_classes - 1
    labels: List[int] = []
    previous = blank
    for best in scores.argmax(axis=1).tolist():
        if best != previous and best != blank:
            labels.append(best)
        previous = best
    return labels


def greedy(logits: np.ndarray, alphabet: Alphabet) -> str:
    """The best-path transcript of ``logits`` in ``alphabet``'s labels."""
    return "".join(alphabet.labels[i] for i in best_path(logits, alphabet.n_classes))


def levenshtein(a: Sequence, b: Sequence) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1)."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, item in enumerate(a, start=1):
        diagonal, row[0] = row[0], i
        for j, other in enumerate(b, start=1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (item != other))
    return row[-1]


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: edit distance over the reference's length.

    An empty reference counts each hypothesis character as one error.
    """
    return levenshtein(hypothesis, reference) / max(len(reference), 1)
