"""Optimized variants of a target: the hoisted LSTM graph and int8 weights, proven against TF."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ds2ir.model.layout import ArtifactLayout
from tests._support.checkout import DATA
from tests.e2e.helpers import invoke, last_json, stage_command


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("variants")
    for target in ("synthetic-small", "synthetic-small-fast", "synthetic-small-int8"):
        invoke("build", "--target", target, "--artifacts", str(artifacts))
    return artifacts


def _reference(artifacts, target):
    with np.load(str(ArtifactLayout(artifacts, target).check_dir / "tf_reference.npz")) as data:
        return {key: data[key] for key in data.files}


def test_hoisted_graph_computes_what_the_fused_graph_computes(variants):
    fused, hoisted = _reference(variants, "synthetic-small"), _reference(variants, "synthetic-small-fast")
    np.testing.assert_array_equal(fused["windows"], hoisted["windows"])  # same seeded inputs
    for name in ("tf_logits", "tf_state_c", "tf_state_h"):
        assert float(np.abs(fused[name] - hoisted[name]).max()) <= 1e-5, name


def test_hoisted_ir_matches_tf_and_keeps_the_interface(docker, variants):
    report = json.loads((ArtifactLayout(variants, "synthetic-small-fast").check_dir / "report.json").read_text())
    assert report["passed"] is True and report["fidelity"]["worst_ratio"] <= 1
    fused = last_json(stage_command(docker, "synthetic-small", "convert", ["inspect-ir"], variants))
    hoisted = last_json(stage_command(docker, "synthetic-small-fast", "convert", ["inspect-ir"], variants))
    assert hoisted == fused
    xml = ArtifactLayout(variants, "synthetic-small-fast").ir_xml.read_text()
    assert "LSTMSequence" not in xml and "TensorIterator" not in xml


def test_int8_weights_are_smaller_and_close(variants):
    fp32 = ArtifactLayout(variants, "synthetic-small")
    int8 = ArtifactLayout(variants, "synthetic-small-int8")
    # Every weight matrix becomes u8 (+ scales); at n_hidden 64 the fp32 biases and scales still
    # weigh in, at 2048 the bin is ~1/4 (docs/variants.md).
    assert 'element_type="u8"' in int8.ir_xml.read_text() and 'element_type="u8"' not in fp32.ir_xml.read_text()
    assert int8.ir_bin.stat().st_size < 0.6 * fp32.ir_bin.stat().st_size
    report = json.loads((int8.check_dir / "report.json").read_text())
    assert report["tolerance"] is None and report["passed"] is True  # reported, judged by transcripts
    assert 0 < report["max_scaled"] < 1 and report["ir_vs_f64"] > 100 * report["tf_vs_f64"]
    print(f"int8 weights: |IR - f64| {report['ir_vs_f64']:.3g}, |TF - f64| {report['tf_vs_f64']:.3g}")


def test_verify_variants_puts_every_variant_next_to_tf_on_real_speech(variants):
    recording = DATA / "LDC93S1.wav"
    result = invoke("verify", "--target", "synthetic-small", "--variants", "--audio", str(recording),
                    "--artifacts", str(variants))
    comparison = json.loads((ArtifactLayout(variants, "synthetic-small").verify_dir / "variants.json").read_text())
    (entry,) = comparison["files"].values()
    rows = entry["variants"]
    assert list(rows) == ["fp32", "hoisted-fp32", "int8"]
    for variant in ("fp32", "hoisted-fp32"):  # gated: within the float64 bound, the same transcript
        assert rows[variant]["passed"] and rows[variant]["transcript"] == entry["tf"], variant
    assert rows["int8"]["tolerance"] is None and rows["int8"]["ir_vs_f64"] > 100 * rows["fp32"]["tf_vs_f64"]
    assert comparison["passed"] is True
    assert "| hoisted-fp32 | synthetic-small-fast |" in result.stdout
