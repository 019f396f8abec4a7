"""CTC decoding (greedy, and beam search with an optional scorer) and character error rate.

DeepSpeech's output has ``len(alphabet.labels) + 1`` classes per time step, the CTC
blank being the last. Greedy (best-path) decoding needs no language model, so it shows
whether the IR's logits mean the same text as TensorFlow's. Beam search is DeepSpeech's
own decoder (ds_ctcdecoder, in the app image), run as the native client runs it, with a
scorer (``ds2ir.model.scorer``) when one is given.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import numpy as np

from ds2ir.errors import ConfigError
from ds2ir.model.architecture import Alphabet

__all__ = ["CUTOFF_PROB", "CUTOFF_TOP_N", "beam_search", "best_path", "cer", "check_options", "greedy", "levenshtein"]

# The pruning DeepSpeech's native client (deepspeech.cc, DS_CreateStream) gives its decoder.
CUTOFF_TOP_N = 40
CUTOFF_PROB = 1.0


def _steps(logits: np.ndarray, n_classes: int) -> np.ndarray:
    """``logits`` as ``[T, n_classes]``, accepting the graph's batch axis ``[T, 1, n_classes]``."""
    scores = np.asarray(logits)
    if scores.ndim == 3 and scores.shape[1] == 1:
        scores = scores[:, 0, :]
    if scores.ndim != 2 or scores.shape[1] != n_classes:
        raise ConfigError(
            f"the network output has shape {scores.shape}, but the alphabet needs [T, {n_classes}] "
            f"({n_classes - 1} labels + blank); use the alphabet the model was trained with."
        )
    return scores


def best_path(logits: np.ndarray, n_classes: int) -> List[int]:
    """Label indices of the best path: argmax per step, repeats merged, blanks dropped.

    ``logits`` is ``[T, n_classes]`` or ``[T, 1, n_classes]`` (the graph's batch axis);
    softmaxed or not makes no difference to the argmax.
    """
    scores = _steps(logits, n_classes)
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


def check_options(*, scorer: Optional[object], beam_width: Optional[int], lm_alpha: Optional[float],
                  lm_beta: Optional[float]) -> None:
    """Refuse decoder options that mean nothing together, as DeepSpeech's client takes them:
    alpha and beta together and only with a scorer, a beam width of at least 1."""
    if beam_width is not None and beam_width < 1:
        raise ConfigError(f"--beam-width must be at least 1, got {beam_width}")
    if (lm_alpha is None) != (lm_beta is None):
        raise ConfigError("give --lm-alpha and --lm-beta together (the scorer's defaults apply without both)")
    if lm_alpha is not None and scorer is None:
        raise ConfigError("--lm-alpha and --lm-beta weigh a scorer's language model; they need --scorer")


def beam_search(probs: np.ndarray, alphabet: Alphabet, *, beam_width: int, scorer: Optional[Any] = None) -> str:
    """The best beam of DeepSpeech's CTC beam search over softmax ``probs`` (the IR's ``logits``).

    ``scorer`` is a loaded ``ds2ir.model.scorer.load`` scorer, or None for beam search on the
    network's probabilities alone. Needs ds_ctcdecoder (DecoderError without it).
    """
    from ds2ir.model.scorer import ctcdecoder, native_alphabet

    check_options(scorer=scorer, beam_width=beam_width, lm_alpha=None, lm_beta=None)
    steps = np.ascontiguousarray(_steps(probs, alphabet.n_classes), dtype=np.float64)
    decoder = ctcdecoder()
    if not len(steps):
        return ""
    beams = decoder.swigwrapper.ctc_beam_search_decoder(steps, native_alphabet(alphabet), beam_width, CUTOFF_PROB,
                                                        CUTOFF_TOP_N, scorer, {}, 1)
    return "".join(alphabet.labels[token] for token in beams[0].tokens) if len(beams) else ""


def levenshtein(a: Sequence[object], b: Sequence[object]) -> int:
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
