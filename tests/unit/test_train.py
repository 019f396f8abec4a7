from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from ds2ir.errors import AudioError, ConfigError, MissingInputError
from ds2ir.model import features
from ds2ir.model.architecture import Alphabet, Architecture
from ds2ir.stages.freeze import train

ALPHABET = Alphabet.default()
TINY = Architecture(n_hidden=8)
DATA = Path(__file__).resolve().parents[2] / "data"
LDC93S1_TEXT = "she had your dark suit in greasy wash water all year"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("0 46797 She had your dark suit in greasy wash water all year.\n", LDC93S1_TEXT),
        ("She had your dark suit.", "she had your dark suit"),
        ("  Don't\tSTOP --  now!\n", "don't stop now"),
        ("12 345", None),
    ],
)
def test_normalize_transcript(text, expected):
    if expected is None:
        with pytest.raises(ConfigError, match="no characters the alphabet can spell"):
            train.normalize_transcript(text, ALPHABET)
    else:
        assert train.normalize_transcript(text, ALPHABET) == expected


@pytest.mark.parametrize("text, char", [("0 100 Café au lait", "é"), ("0 100 catch 22", "2")])
def test_normalize_transcript_refuses_words_the_alphabet_cannot_spell(text, char):
    with pytest.raises(ConfigError, match=f"LDC.txt: the transcript has {char!r}"):
        train.normalize_transcript(text, ALPHABET, source="LDC.txt")


def test_normalize_transcript_needs_a_space_label_for_several_words():
    letters = Alphabet(tuple("abcdefghijklmnopqrstuvwxyz"))
    assert train.normalize_transcript("Hello.", letters) == "hello"
    with pytest.raises(ConfigError, match="no space label"):
        train.normalize_transcript("hello world", letters)


def test_utterance_inputs_are_the_streaming_windows_unbatched():
    frames, batched = features.windows_for_file(DATA / "LDC93S1.wav", TINY)
    inputs = train.utterance_inputs(DATA / "LDC93S1.wav", TINY)
    assert inputs.shape == (len(frames), TINY.window_width, TINY.n_input) and inputs.dtype == np.float32
    np.testing.assert_array_equal(inputs[:TINY.n_steps], batched.windows[0, 0])
    np.testing.assert_array_equal(inputs[-1, TINY.n_context], frames[-1])
    assert not inputs[0, :TINY.n_context].any() and not inputs[-1, TINY.n_context + 1:].any()


def _write_wav(path: Path, seconds: float) -> Path:
    samples = (np.sin(np.arange(int(16000 * seconds)) * 0.05) * 8000).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())
    return path


def test_train_checkpoint_checks_its_inputs_before_training(tmp_path):
    wav = _write_wav(tmp_path / "short.wav", 0.2)  # 9 feature frames
    transcript = tmp_path / "short.txt"
    transcript.write_text("0 3200 a b\n")
    kwargs = dict(wav=wav, transcript_file=transcript, arch=TINY, alphabet=ALPHABET, seed=1)
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        train.train_checkpoint(tmp_path / "ckpt", epochs=0, **kwargs)
    with pytest.raises(MissingInputError, match="absent.txt does not exist"):
        train.train_checkpoint(tmp_path / "ckpt", **dict(kwargs, transcript_file=tmp_path / "absent.txt"))
    transcript.write_text("0 3200 hello hello\n")  # 11 labels, 13 steps with the blanks between l and l
    with pytest.raises(AudioError, match="9 feature frames cannot align the 11-character transcript"):
        train.train_checkpoint(tmp_path / "ckpt", **kwargs)
    assert not (tmp_path / "ckpt").exists()


def test_training_starts_from_seeded_glorot_weights_and_zero_biases():
    from ds2ir.stages.freeze.checkpoint import glorot_variables

    values = glorot_variables(TINY, ALPHABET.n_classes, 7, bias_limit=0.0)
    again = glorot_variables(TINY, ALPHABET.n_classes, 7, bias_limit=0.0)
    assert values.keys() == again.keys()
    for name, value in values.items():
        np.testing.assert_array_equal(value, again[name])
        assert value.dtype == np.float32
        if name.endswith("bias"):
            assert not value.any()
        else:
            assert 0 < np.abs(value).max() <= np.sqrt(6.0 / sum(value.shape))