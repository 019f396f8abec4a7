"""Scorer packages written and checked in plain Python (no ds_ctcdecoder on the host).

The real decoder loading these packages is tested end to end (tests/e2e/test_transcribe_beam.py).
"""
from __future__ import annotations

import json
import re
import struct
import sys
from pathlib import Path
from typing import List, Set, Tuple

import numpy as np
import pytest

from ds2ir.errors import ConfigError, DecoderError, MissingInputError
from ds2ir.model import decode, scorer
from ds2ir.model.architecture import Alphabet

ALPHABET = Alphabet.default()
WORDS = ["she", "had", "your", "dark", "suit", "shed", "héllo", "<unk>", "<s>", "</s>"]


@pytest.fixture
def lm(tmp_path: Path) -> Path:
    """A stand-in KenLM binary: the header is all the packager reads of it."""
    path = tmp_path / "lm.binary"
    path.write_bytes(scorer.KENLM_MAGIC + bytes(range(256)) * 3)
    return path


@pytest.fixture
def package(tmp_path: Path, lm: Path) -> Path:
    out = tmp_path / "words.scorer"
    scorer.write_package(lm, WORDS, ALPHABET, out, alpha=0.5, beta=2.25)
    return out


def _accepted(path: Path) -> Set[str]:
    """Every word the package's FST accepts, decoded from its bytes as OpenFST maps them."""
    data = path.read_bytes()
    info = scorer.inspect(path)
    tail = info.lm_bytes + 25 + len(scorer._fst_prefix())
    _, flags, _, start, states, arcs = struct.unpack_from("<iiQqqq", data, tail)
    offset = tail + struct.calcsize("<iiQqqq")
    offset += -offset % 16
    state_table = [struct.unpack_from("<fIIII", data, offset + 20 * i) for i in range(states)]
    offset += 20 * states
    offset += -offset % 16
    arc_table = [struct.unpack_from("<iifi", data, offset + 16 * i) for i in range(arcs)]
    assert offset + 16 * arcs == len(data)
    words: Set[str] = set()

    def walk(state: int, labels: List[int]) -> None:
        weight, first, count, _, _ = state_table[state]
        if weight == 0.0:
            words.add("".join(ALPHABET.labels[label - 1] for label in labels))
        leaving: List[Tuple[int, int, float, int]] = arc_table[first:first + count]
        assert [arc[0] for arc in leaving] == sorted({arc[0] for arc in leaving})  # deterministic, label-sorted
        for ilabel, olabel, arc_weight, target in leaving:
            assert ilabel == olabel and arc_weight == 0.0 and target > state
            walk(target, labels + [ilabel])

    walk(start, [])
    return words


def test_package_spells_each_word_then_a_space(tmp_path: Path, lm: Path) -> None:
    info, skipped = scorer.write_package(lm, WORDS, ALPHABET, tmp_path / "out.scorer", alpha=0.5, beta=2.25)
    assert skipped == ["héllo"]  # not in the English alphabet; DeepSpeech leaves such words out too
    assert _accepted(tmp_path / "out.scorer") == {"she ", "had ", "your ", "dark ", "suit ", "shed "}
    assert (info.alpha, info.beta, info.utf8, info.lm_bytes) == (0.5, 2.25, False, lm.stat().st_size)
    assert (tmp_path / "out.scorer").read_bytes()[:info.lm_bytes] == lm.read_bytes()


def test_header_is_deepspeechs(package: Path, lm: Path) -> None:
    data = package.read_bytes()
    at = lm.stat().st_size
    assert data[at:at + 8] == b"EIRT\x06\x00\x00\x00"  # 'TRIE' as a little-endian int32, version 6
    assert struct.unpack_from("<?dd", data, at + 8) == (False, 0.5, 2.25)
    assert data[at + 25:at + 29] == struct.pack("<i", 2125659606)  # OpenFST's magic


def test_package_command_summarises(tmp_path: Path, lm: Path) -> None:
    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("she had\nyour  dark suit she\n", encoding="utf-8")
    summary = scorer.package(lm, vocabulary, ALPHABET, tmp_path / "s.scorer")
    assert summary["words"] == 5 and summary["skipped"] == []
    assert (summary["alpha"], summary["beta"]) == (scorer.RELEASE_ALPHA, scorer.RELEASE_BETA)


@pytest.mark.parametrize("cut, message", [
    (1, "is truncated: its vocabulary trie ends at byte"),
    (60, "is truncated: its vocabulary trie ends at byte"),
    ("header", "has no vocabulary trie at its end"),
])
def test_truncated_package_is_refused(package: Path, lm: Path, cut, message: str) -> None:
    data = package.read_bytes()
    keep = lm.stat().st_size + 30 if cut == "header" else len(data) - cut
    package.write_bytes(data[:keep])
    with pytest.raises(DecoderError, match=message):
        scorer.inspect(package)


@pytest.mark.parametrize("content, message", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt ", "is not a DeepSpeech scorer: it does not start with a KenLM"),
    (b"", "is not a DeepSpeech scorer"),
    (scorer.KENLM_INCOMPLETE + b"\0" * 100, "incomplete KenLM binary"),
])
def test_other_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.scorer"
    path.write_bytes(content)
    with pytest.raises(DecoderError, match=message):
        scorer.inspect(path)


def test_a_bare_kenlm_binary_has_no_trie(lm: Path) -> None:
    with pytest.raises(DecoderError, match="has no vocabulary trie at its end: it is truncated, or a bare KenLM binary"):
        scorer.inspect(lm)


def test_another_trie_version_is_named(package: Path, lm: Path) -> None:
    data = bytearray(package.read_bytes())
    data[lm.stat().st_size + 4] = 5
    package.write_bytes(bytes(data))
    with pytest.raises(DecoderError, match="trie format version 5; DeepSpeech 0.7 to 0.9"):
        scorer.inspect(package)


def test_missing_scorer(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="does not exist"):
        scorer.inspect(tmp_path / "nope.scorer")


def test_packaging_refuses_what_it_cannot_package(tmp_path: Path, lm: Path, package: Path) -> None:
    with pytest.raises(DecoderError, match="already carries a vocabulary trie"):
        scorer.write_package(package, WORDS, ALPHABET, tmp_path / "again.scorer")
    text = tmp_path / "lm.arpa"
    text.write_text("\\data\\\n")
    with pytest.raises(DecoderError, match="not a KenLM binary"):
        scorer.write_package(text, WORDS, ALPHABET, tmp_path / "a.scorer")
    with pytest.raises(DecoderError, match="None of the vocabulary's words"):
        scorer.write_package(lm, ["été"], ALPHABET, tmp_path / "b.scorer")
    with pytest.raises(MissingInputError, match="does not exist"):
        scorer.write_package(tmp_path / "none.binary", WORDS, ALPHABET, tmp_path / "c.scorer")
    with_strings = tmp_path / "with-vocabulary.binary"  # build_binary without -v appends the words
    with_strings.write_bytes(lm.read_bytes() + b"\0<unk>\0<s>\0she\0</s>\0had\0")
    with pytest.raises(DecoderError, match="rebuild it with 'build_binary -v"):
        scorer.write_package(with_strings, WORDS, ALPHABET, tmp_path / "d.scorer")
    assert not (tmp_path / "a.scorer").exists()


@pytest.fixture
def no_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ds_ctcdecoder", None)  # import fails, as in an image without it


def test_beam_search_without_ds_ctcdecoder_says_which_image_has_it(no_decoder: None, package: Path) -> None:
    probs = np.full((4, ALPHABET.n_classes), 1.0 / ALPHABET.n_classes, np.float32)
    with pytest.raises(DecoderError, match="app_image .*app-ov2025.3"):
        decode.beam_search(probs, ALPHABET, beam_width=8)
    with pytest.raises(DecoderError, match="lacks"):
        scorer.load(package, ALPHABET)


@pytest.mark.parametrize("options, message", [
    (dict(scorer=None, beam_width=0, lm_alpha=None, lm_beta=None), "at least 1"),
    (dict(scorer="s", beam_width=None, lm_alpha=0.5, lm_beta=None), "together"),
    (dict(scorer=None, beam_width=None, lm_alpha=0.5, lm_beta=1.0), "need --scorer"),
])
def test_decoder_options_that_mean_nothing_are_refused(options, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        decode.check_options(**options)
    decode.check_options(scorer="s", beam_width=None, lm_alpha=0.5, lm_beta=1.0)
    decode.check_options(scorer=None, beam_width=16, lm_alpha=None, lm_beta=None)


def test_package_scorer_command_uses_the_targets_alphabet(tmp_path: Path, lm: Path, capsys) -> None:
    from ds2ir.stages import cli
    from tests._support.checkout import targets_file

    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("she had héllo\n", encoding="utf-8")
    cli.main(["package-scorer", "--target", "ldc93s1-smoke", "--artifacts", str(tmp_path), "--lm", str(lm),
              "--vocabulary", str(vocabulary), "--output", str(tmp_path / "o.scorer"), "--default-alpha", "0.25"],
             targets=targets_file())
    summary = json.loads(capsys.readouterr().out)
    assert (summary["alpha"], summary["beta"], summary["words"], summary["skipped"]) == (0.25, scorer.RELEASE_BETA, 2, ["héllo"])
    assert _accepted(tmp_path / "o.scorer") == {"she ", "had "}


def test_transcribe_takes_the_decoder_options() -> None:
    from ds2ir.stages import cli

    args = cli.parse_args(["transcribe", "--audio", "a.wav", "--scorer", "s.scorer", "--beam-width", "8",
                           "--lm-alpha", "0.5", "--lm-beta", "1"])
    assert (args.scorer, args.beam_width, args.lm_alpha, args.lm_beta) == (Path("s.scorer"), 8, 0.5, 1.0)
    args = cli.parse_args(["transcribe", "--audio", "a.wav"])
    assert (args.scorer, args.beam_width, args.lm_alpha, args.lm_beta) == (None, None, None, None)


def _package_scorer(tmp_path: Path, lm: Path, vocabulary: Path, output: Path, *extra: str):  # type: ignore[no-untyped-def]
    """`invoke package-scorer` as a user runs it, with a deadline: a FIFO must not make it wait."""
    import os
    import subprocess

    from tests.e2e.helpers import PROJECT

    return subprocess.run([sys.executable, "-m", "invoke", "-r", str(PROJECT), "package-scorer", "--target", "ldc93s1-smoke",
                           "--artifacts", str(tmp_path), "--lm", str(lm), "--vocabulary", str(vocabulary),
                           "--output", str(output), *extra], cwd=str(PROJECT), env=dict(os.environ),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)


@pytest.mark.parametrize("bad", ["output-is-lm", "output-links-to-lm", "output-is-vocabulary", "output-directory",
                                 "lm-directory", "vocabulary-directory", "vocabulary-fifo", "lm-fifo", "output-fifo",
                                 "alpha-nan", "beta-inf"])
def test_package_scorer_refuses_bad_paths_and_numbers_clearly_and_changes_nothing(tmp_path: Path, lm: Path, bad: str) -> None:
    import os

    vocabulary = tmp_path / "vocab.txt"
    vocabulary.write_text("she had\n", encoding="utf-8")
    output, extra = tmp_path / "o.scorer", []
    special = tmp_path / "special"
    if bad.endswith("directory"):
        special.mkdir()
    elif bad.endswith("fifo"):
        os.mkfifo(str(special))
    if bad == "output-links-to-lm":
        (tmp_path / "link.scorer").symlink_to(lm)
    output = {"output-is-lm": lm, "output-links-to-lm": tmp_path / "link.scorer", "output-is-vocabulary": vocabulary,
              "output-directory": special, "output-fifo": special}.get(bad, output)
    lm_path = special if bad.startswith("lm-") else lm
    vocabulary_path = special if bad.startswith("vocabulary-") else vocabulary
    extra = {"alpha-nan": ["--default-alpha", "nan"], "beta-inf": ["--default-beta", "inf"]}.get(bad, [])
    before = {p.name: (p.is_dir(), p.read_bytes() if p.is_file() and not p.is_symlink() else b"") for p in tmp_path.iterdir()
              if not p.name == "special" or not bad.endswith("fifo")}
    result = _package_scorer(tmp_path, lm_path, vocabulary_path, output, *extra)
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    message = {"output-is-lm": "is the input", "output-links-to-lm": "is the input", "output-is-vocabulary": "is the input",
               "output-directory": "is not a regular file", "output-fifo": "is not a regular file",
               "lm-directory": "is a directory, not a regular file", "vocabulary-directory": "is a directory, not a regular file",
               "vocabulary-fifo": "is a FIFO (named pipe), not a regular file", "lm-fifo": "is a FIFO (named pipe)",
               "alpha-nan": "default alpha must be a finite number, got nan", "beta-inf": "default beta must be a finite number, got inf"}[bad]
    assert "ds2ir: error: " in result.stdout and message in result.stdout, result.stdout
    after = {p.name: (p.is_dir(), p.read_bytes() if p.is_file() and not p.is_symlink() else b"") for p in tmp_path.iterdir()
             if not p.name == "special" or not bad.endswith("fifo")}
    assert after == before


def _damaged(package: Path, **fields: float) -> Path:
    """``package`` with header fields replaced: states, arcs, start (the FST's) or alpha, beta (the trie's)."""
    data = bytearray(package.read_bytes())
    at = scorer._find_trie(bytes(data))
    tail = at + scorer._TRIE_HEADER.size + len(scorer._fst_prefix())
    version, flags, properties, start, states, arcs = scorer._FST_TAIL.unpack_from(data, tail)
    scorer._FST_TAIL.pack_into(data, tail, version, flags, properties, int(fields.get("start", start)),
                               int(fields.get("states", states)), int(fields.get("arcs", arcs)))
    magic, trie_version, utf8, alpha, beta = scorer._TRIE_HEADER.unpack_from(data, at)
    scorer._TRIE_HEADER.pack_into(data, at, magic, trie_version, utf8, fields.get("alpha", alpha), fields.get("beta", beta))
    package.write_bytes(bytes(data))
    return package


@pytest.mark.parametrize("fields, message", [
    ({"states": -5}, "declares -5 states"),
    ({"arcs": -7}, "-7 arcs"),
    ({"start": 999}, "start state 999"),
    ({"start": -1}, "start state -1"),
    ({"states": 0, "arcs": 0}, "declares 0 states"),
    ({"alpha": float("nan")}, "alpha and beta are nan and"),
    ({"beta": float("-inf")}, "not finite"),
])
def test_inspect_refuses_impossible_counts_start_state_and_weights(package: Path, fields, message: str) -> None:
    assert scorer.inspect(package).states > 0
    with pytest.raises(DecoderError, match=re.escape(message)):
        scorer.inspect(_damaged(package, **fields))
