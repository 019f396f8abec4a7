"""ldc93s1-smoke: a model overfitted on LDC93S1 (its checkpoint shipped in data/) transcribes it exactly through
the IR, and builds to the bytes outputs.lock.json records on any CPU; ldc93s1-smoke-train trains it again."""
from __future__ import annotations

import hashlib
import json

import pytest

from ds2ir.model.decode import cer
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import CHECKOUT, DATA, targets_file
from tests.e2e.helpers import invoke

SENTENCE = "she had your dark suit in greasy wash water all year"


@pytest.fixture(scope="module")
def smoke(smoke_build):
    return smoke_build


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`invoke freeze --target ldc93s1-smoke-train`: 300 Adam steps on LDC93S1, then the frozen graph."""
    artifacts = tmp_path_factory.mktemp("trained")
    invoke("freeze", "--target", "ldc93s1-smoke-train", "--artifacts", str(artifacts))
    return artifacts


def test_the_build_matches_the_locked_outputs(smoke):
    """The smoke_build fixture ran `invoke build --check`: every output has outputs.lock.json's bytes."""
    manifest = json.loads((ArtifactLayout(smoke, "ldc93s1-smoke").target_dir / "manifest.json").read_text())
    locked = json.loads((CHECKOUT / "outputs.lock.json").read_text())["ldc93s1-smoke"]
    assert manifest["outputs"] == locked and {"frozen/output_graph.pb", "ir/output_graph.bin"} <= set(locked)


def test_training_reaches_the_sentence(trained):
    report = json.loads(ArtifactLayout(trained, "ldc93s1-smoke-train").training_report.read_text())
    assert report["target"] == SENTENCE == report["transcript"]
    assert report["loss"] < report["initial_loss"] / 100
    print(f"training: {report['seconds']} s, loss {report['initial_loss']:.1f} -> {report['loss']:.4f}")


def test_ir_transcribes_ldc93s1_exactly(smoke):
    result = invoke("transcribe", str(DATA / "LDC93S1.wav"), "--target", "ldc93s1-smoke",
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


def test_training_is_deterministic_on_one_machine(trained, tmp_path):
    invoke("freeze", "--target", "ldc93s1-smoke-train", "--artifacts", str(tmp_path))

    def digests(root):
        layout = ArtifactLayout(root, "ldc93s1-smoke-train")
        files = sorted(layout.checkpoint_dir.iterdir()) + [layout.frozen_graph]
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert digests(tmp_path) == digests(trained)


def test_the_hoisted_variant_builds_from_the_shipped_checkpoint(smoke):
    invoke("build", "--target", "ldc93s1-smoke", "--variant", "hoisted-fp32", "--artifacts", str(smoke))
    report = json.loads(ArtifactLayout.of(smoke, load_target(targets_file(), "ldc93s1-smoke@hoisted-fp32")).check_report.read_text())
    assert report["passed"] is True and report["fidelity"]["worst_ratio"] <= 1
