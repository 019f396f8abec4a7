"""`invoke transcribe` with DeepSpeech's beam search in the app image: without a scorer, and with
a real KenLM scorer packaged here (ARPA written by the test, build_binary compiled from the kenlm
sdist), on the models trained on LDC93S1."""
from __future__ import annotations

import json
import time

import pytest

from ds2ir.model.decode import cer
from ds2ir.runner import Runner
from tests._support import kenlm
from tests._support.checkout import CHECKOUT
from tests.e2e.helpers import invoke

SENTENCE = "she had your dark suit in greasy wash water all year"
WAV = CHECKOUT / "data" / "LDC93S1.wav"  # what ldc93s1-smoke trains on


@pytest.fixture(scope="module")
def artifacts(smoke_build):
    invoke("build", "--target", "ldc93s1-smoke", "--variant", "int8", "--artifacts", str(smoke_build))
    return smoke_build


@pytest.fixture(scope="session")
def sentence_scorer(tmp_path_factory):
    """A scorer of the sentence's words: a trigram LM of the sentence, built and packaged for real."""
    work = tmp_path_factory.mktemp("kenlm")
    started = time.monotonic()
    build_binary = kenlm.build_binary(work, Runner(echo_output=False))
    print(f"build_binary compiled in {time.monotonic() - started:.1f} s")
    lm = kenlm.binary_lm(build_binary, kenlm.write_arpa([SENTENCE], work / "lm.arpa"), work / "lm.binary",
                         Runner(echo_output=False))
    (work / "vocabulary.txt").write_text(SENTENCE + "\n")
    summary = json.loads(invoke("package-scorer", "--lm", str(lm), "--vocabulary", str(work / "vocabulary.txt"),
                                "--output", str(work / "sentence.scorer")).stdout.strip().splitlines()[-1])
    assert summary["words"] == len(set(SENTENCE.split())) and summary["skipped"] == []
    return work / "sentence.scorer"


def transcribe(artifacts, target, *options):
    """(transcript, the JSON line) of `invoke transcribe` on LDC93S1."""
    lines = invoke("transcribe", str(WAV), "--target", target, "--artifacts", str(artifacts), *options).stdout
    report = json.loads(lines.strip().splitlines()[-1])
    return report["transcript"], report


def test_beam_search_without_a_scorer_keeps_the_exact_transcript(artifacts):
    greedy, greedy_report = transcribe(artifacts, "ldc93s1-smoke")
    beam, beam_report = transcribe(artifacts, "ldc93s1-smoke", "--beam-width", "64")
    assert greedy == beam == SENTENCE
    assert greedy_report["decoder"] == "greedy"
    assert (beam_report["decoder"], beam_report["beam_width"]) == ("beam search", 64)
    print(f"RTF greedy {greedy_report['real_time_factor']}, beam 64 {beam_report['real_time_factor']}")


def test_a_scorer_keeps_the_int8_transcript_at_least_as_close(artifacts, sentence_scorer):
    greedy, _ = transcribe(artifacts, "ldc93s1-smoke@int8")
    scored, report = transcribe(artifacts, "ldc93s1-smoke@int8", "--scorer", str(sentence_scorer))
    print(f"int8 greedy '{greedy}' (CER {cer(greedy, SENTENCE):.3f}); with the scorer '{scored}' "
          f"(CER {cer(scored, SENTENCE):.3f}), RTF {report['real_time_factor']}")
    # Never worse; not "better": int8 kernels differ by CPU, and where greedy is already exact (an AVX2 EPYC) it cannot improve.
    assert cer(scored, SENTENCE) <= cer(greedy, SENTENCE)
    assert set(scored.split()) <= set(SENTENCE.split())  # the scorer's trie admits only its words
    # The beam width defaults to the model's metadata_beam_width; alpha and beta to the package's.
    assert (report["beam_width"], report["lm_alpha"], report["lm_beta"]) == (500, 0.931289, 1.183414)
    _, weighted = transcribe(artifacts, "ldc93s1-smoke@int8", "--scorer", str(sentence_scorer), "--beam-width", "32",
                             "--lm-alpha", "0.5", "--lm-beta", "2")
    assert (weighted["beam_width"], weighted["lm_alpha"], weighted["lm_beta"]) == (32, 0.5, 2.0)


@pytest.mark.parametrize("damage", ["missing", "not a scorer", "truncated"])
def test_a_bad_scorer_is_one_paragraph(sentence_scorer, tmp_path, damage):
    """Refused on the host before anything is built: no artifacts, no container."""
    path = tmp_path / "bad.scorer"
    if damage == "not a scorer":
        path.write_bytes(WAV.read_bytes())
    elif damage == "truncated":
        path.write_bytes(sentence_scorer.read_bytes()[:-100])
    result = invoke("transcribe", str(WAV), "--target", "ldc93s1-smoke", "--artifacts", str(tmp_path / "artifacts"),
                    "--scorer", str(path), check=False)
    assert result.returncode == 2, result.stdout
    message = result.stdout.strip()
    assert message.startswith("ds2ir: error: ") and "\n" not in message and "Traceback" not in message
    assert str(path) in message and not (tmp_path / "artifacts").exists()
    print(message)


def test_a_damaged_language_model_fails_in_the_app_image_without_crashing_it(artifacts, sentence_scorer, tmp_path):
    """Passes the byte checks, but KenLM refuses it: the decoder would abort; the probe reports it."""
    data = bytearray(sentence_scorer.read_bytes())
    data[60:64] = b"\x09\x09\x09\x09"  # KenLM's sanity values, just after its magic
    path = tmp_path / "damaged.scorer"
    path.write_bytes(bytes(data))
    result = invoke("transcribe", str(WAV), "--target", "ldc93s1-smoke", "--artifacts", str(artifacts),
                    "--scorer", str(path), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout
    assert "ds2ir: error: The scorer /input/scorer/damaged.scorer has a damaged KenLM language model" in result.stdout
