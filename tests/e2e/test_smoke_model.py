"""ldc93s1-smoke: a model trained here on LDC93S1 transcribes it exactly through the IR."""
from __future__ import annotations

import hashlib
import json

import pytest

from ds2ir.config import ArtifactLayout, recordings_dir
from ds2ir.decode import cer
from tests.e2e.helpers import invoke

SENTENCE = "she had your dark suit in greasy wash water all year"


@pytest.fixture(scope="module")
def smoke(smoke_build):
    return smoke_build


def test_training_reaches_the_sentence(smoke):
    report = json.loads(ArtifactLayout(smoke, "ldc93s1-smoke").training_report.read_text())
    assert report["target"] == SENTENCE == report["transcript"]
    assert report["loss"] < report["initial_loss"] / 100
    print(f"training: {report['seconds']} s, loss {report['initial_loss']:.1f} -> {report['loss']:.4f}")


def test_ir_transcribes_ldc93s1_exactly(smoke):
    result = invoke("transcribe", str(recordings_dir() / "LDC93S1.wav"), "--target", "ldc93s1-smoke",
                    "--artifacts", str(smoke))
    assert result.stdout.strip().splitlines()[-2] == SENTENCE


def test_verify_passes_and_tf_says_the_same(smoke):
    invoke("verify", "--target", "ldc93s1-smoke", "--artifacts", str(smoke))
    report = json.loads((ArtifactLayout(smoke, "ldc93s1-smoke").verify_dir / "report.json").read_text())
    assert report["passed"] is True
    by_file = {entry["source"].rsplit("/", 1)[1]: entry for entry in report["files"].values()}
    assert by_file["LDC93S1.wav"]["transcripts"] == {"tf": SENTENCE, "ir": SENTENCE}
    for name, entry in by_file.items():
        assert entry["fidelity"]["passed"] is True, name
        print(f"{name}: CER {cer(entry['transcripts']['ir'], SENTENCE):.3f} '{entry['transcripts']['ir']}'")


def test_training_is_deterministic(smoke, tmp_path):
    invoke("build", "--target", "ldc93s1-smoke", "--artifacts", str(tmp_path))

    def digests(root):
        layout = ArtifactLayout(root, "ldc93s1-smoke")
        files = sorted(layout.checkpoint_dir.iterdir()) + [layout.frozen_graph, layout.ir_xml, layout.ir_bin]
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert digests(tmp_path) == digests(smoke)
