from __future__ import annotations

from typing import List

import numpy as np
import pytest

from ds2ir.errors import ConfigError
from ds2ir.model.architecture import Alphabet
from ds2ir.model.decode import best_path, cer, greedy, levenshtein

ALPHABET = Alphabet((" ", "a", "b", "c", "'"))
BLANK = len(ALPHABET.labels)


def one_hot(path: List[int], n_classes: int = ALPHABET.n_classes) -> np.ndarray:
    """Logits whose argmax at step t is path[t], with some noise below the maximum."""
    rng = np.random.RandomState(len(path))
    logits = rng.uniform(0.0, 0.5, size=(len(path), n_classes)).astype(np.float32)
    logits[np.arange(len(path)), path] = 1.0
    return logits


def test_repeats_collapse_and_blanks_drop() -> None:
    a, b, space = 1, 2, 0
    path = [BLANK, a, a, a, BLANK, b, b, space, space, BLANK, BLANK, a, BLANK]
    assert greedy(one_hot(path), ALPHABET) == "ab a"


def test_blank_separates_a_doubled_letter() -> None:
    assert greedy(one_hot([1, 1, BLANK, 1, 4, 4]), ALPHABET) == "aa'"
    assert greedy(one_hot([1, 1, 1]), ALPHABET) == "a"


def test_blank_is_the_last_class_not_the_first() -> None:
    # Class 0 is a real label (space); an all-zero-class path is one space.
    assert greedy(one_hot([0, 0, 0]), ALPHABET) == " "
    assert greedy(one_hot([BLANK] * 5), ALPHABET) == ""


def test_accepts_the_graphs_batch_axis() -> None:
    logits = one_hot([2, BLANK, 3, 3])
    assert greedy(logits[:, None, :], ALPHABET) == greedy(logits, ALPHABET) == "bc"


def test_no_steps_decode_to_nothing() -> None:
    assert greedy(np.zeros((0, ALPHABET.n_classes)), ALPHABET) == ""


def test_best_path_gives_label_indices() -> None:
    assert best_path(one_hot([3, BLANK, 3, 2]), ALPHABET.n_classes) == [3, 3, 2]


@pytest.mark.parametrize("shape", [(4, ALPHABET.n_classes - 1), (4, 2, ALPHABET.n_classes), (ALPHABET.n_classes,)])
def test_wrong_shape_names_the_alphabet(shape: tuple) -> None:
    with pytest.raises(ConfigError, match="alphabet"):
        greedy(np.zeros(shape), ALPHABET)


def test_default_alphabet_decodes_english() -> None:
    alphabet = Alphabet.default()
    text = "she had"
    path: List[int] = []
    for char in text:
        path += [alphabet.labels.index(char)] * 2 + [alphabet.n_classes - 1]
    assert greedy(one_hot(path, alphabet.n_classes), alphabet) == text


@pytest.mark.parametrize(
    "a, b, distance",
    [("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("flaw", "lawn", 2), ("same", "same", 0)],
)
def test_levenshtein(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


def test_cer() -> None:
    assert cer("she had", "she had") == 0.0
    assert cer("she hat", "she had") == pytest.approx(1 / 7)
    assert cer("", "abcd") == 1.0
    assert cer("xx", "") == 2.0
    assert cer("", "") == 0.0
