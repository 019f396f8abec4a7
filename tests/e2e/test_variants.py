"""Variants, an axis of a target: `invoke build --all-variants` runs the checkpoint once and freeze and reference
once per frozen graph, each variant adds its convert and check; the hoisted LSTM graph and int8 weights proven
against TF."""
from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import pytest

from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import TargetsFile
from tests._support.checkout import DATA, targets_file
from tests.e2e.helpers import invoke, last_json, stage_command

TARGET = "synthetic-small"


def _runs(output: str) -> Counter:
    """(variant label, stage) -> how often the build output says the stage ran."""
    return Counter(re.findall(r"^\[([^\]]+)\] (\w+): running", output, re.MULTILINE))


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("variants")
    result = invoke("build", "--target", TARGET, "--all-variants", "--artifacts", str(artifacts))
    return {"artifacts": artifacts, "output": result.stdout}


def _layout(artifacts, variant):
    return ArtifactLayout.of(artifacts, TargetsFile.load(targets_file()).target(f"{TARGET}@{variant}"))


def _reference(artifacts, variant):
    with np.load(str(_layout(artifacts, variant).check_reference)) as data:
        return {key: data[key] for key in data.files}


def test_all_variants_run_the_checkpoint_once_and_freeze_once_per_frozen_graph(variants):
    runs = _runs(variants["output"])
    stages = Counter(stage for _, stage in runs.elements())
    assert stages == {"checkpoint": 1, "freeze": 2, "reference": 2, "convert": 5, "check": 5}, runs
    assert {label for label, stage in runs if stage == "freeze"} == {TARGET, f"{TARGET}@hoisted-fp32"}
    for variant in ("fp16", "int8", "hoisted-int8"):  # they find what another variant made up to date
        assert f"[{TARGET}@{variant}] freeze: up to date, skipped" in variants["output"]
    for variant in ("fp32", "fp16", "int8", "hoisted-fp32", "hoisted-int8"):
        report = json.loads(_layout(variants["artifacts"], variant).check_report.read_text())
        assert report["passed"] is True and report["target"] == (TARGET if variant == "fp32" else f"{TARGET}@{variant}")


def test_a_variant_built_again_is_a_no_op_and_the_default_keeps_its_paths(variants):
    artifacts = variants["artifacts"]
    again = invoke("build", "--target", TARGET, "--variant", "int8", "--artifacts", str(artifacts))
    assert not _runs(again.stdout) and f"[{TARGET}@int8] ran: nothing (all up to date)" in again.stdout
    default = ArtifactLayout(artifacts, TARGET)
    assert default.ir_xml.is_file() and (default.target_dir / "manifest.json").is_file()
    assert (artifacts / TARGET / "variants" / "int8" / "ir" / "output_graph.xml").is_file()
    assert (artifacts / TARGET / "graphs" / "hoisted" / "frozen" / "output_graph.pb").is_file()
    assert not (artifacts / f"{TARGET}-int8").exists()


def test_an_unknown_variant_is_one_paragraph_before_any_container(variants):
    result = invoke("build", "--target", TARGET, "--variant", "int4", "--artifacts", str(variants["artifacts"]), check=False)
    assert result.returncode == 2 and "has no variant 'int4'; it is converted to fp32, fp16, int8" in result.stdout
    assert "Traceback" not in result.stdout and "$ docker run" not in result.stdout


def test_hoisted_graph_computes_what_the_fused_graph_computes(variants):
    fused, hoisted = _reference(variants["artifacts"], "fp32"), _reference(variants["artifacts"], "hoisted-fp32")
    np.testing.assert_array_equal(fused["windows"], hoisted["windows"])  # same seeded inputs
    for name in ("tf_logits", "tf_state_c", "tf_state_h"):
        assert float(np.abs(fused[name] - hoisted[name]).max()) <= 1e-5, name


def test_hoisted_ir_matches_tf_and_keeps_the_interface(docker, variants):
    artifacts = variants["artifacts"]
    report = json.loads(_layout(artifacts, "hoisted-fp32").check_report.read_text())
    assert report["passed"] is True and report["fidelity"]["worst_ratio"] <= 1
    fused = last_json(stage_command(docker, TARGET, "convert", ["inspect-ir"], artifacts))
    hoisted = last_json(stage_command(docker, f"{TARGET}@hoisted-fp32", "convert", ["inspect-ir"], artifacts))
    assert hoisted == fused
    xml = _layout(artifacts, "hoisted-fp32").ir_xml.read_text()
    assert "LSTMSequence" not in xml and "TensorIterator" not in xml


def test_int8_weights_are_smaller_and_close(variants):
    fp32, int8 = _layout(variants["artifacts"], "fp32"), _layout(variants["artifacts"], "int8")
    # Every weight matrix becomes u8 (+ scales); at n_hidden 64 the fp32 biases and scales still
    # weigh in, at 2048 the bin is ~1/4 (docs/variants.md).
    assert 'element_type="u8"' in int8.ir_xml.read_text() and 'element_type="u8"' not in fp32.ir_xml.read_text()
    assert int8.ir_bin.stat().st_size < 0.6 * fp32.ir_bin.stat().st_size
    report = json.loads(int8.check_report.read_text())
    assert report["tolerance"] is None and report["passed"] is True  # reported, judged by transcripts
    assert 0 < report["max_scaled"] < 1 and report["ir_vs_f64"] > 100 * report["tf_vs_f64"]
    print(f"int8 weights: |IR - f64| {report['ir_vs_f64']:.3g}, |TF - f64| {report['tf_vs_f64']:.3g}")


def test_verify_all_variants_puts_every_variant_next_to_tf_on_real_speech(variants):
    artifacts = variants["artifacts"]
    recording = DATA / "LDC93S1.wav"
    result = invoke("verify", "--target", TARGET, "--all-variants", "--audio", str(recording), "--artifacts", str(artifacts))
    comparison = json.loads((ArtifactLayout(artifacts, TARGET).verify_dir / "variants.json").read_text())
    (entry,) = comparison["files"].values()
    rows = entry["variants"]
    assert set(rows) == {"fp32", "fp16", "int8", "hoisted-fp32", "hoisted-int8"}  # variants.json sorts its keys
    for variant in ("fp32", "hoisted-fp32"):  # gated: within the float64 bound, the same transcript
        assert rows[variant]["passed"] and rows[variant]["transcript"] == entry["tf"], variant
    assert rows["int8"]["tolerance"] is None and rows["int8"]["ir_vs_f64"] > 100 * rows["fp32"]["tf_vs_f64"]
    assert comparison["passed"] is True
    assert f"| hoisted-fp32 | {TARGET}@hoisted-fp32 |" in result.stdout
