"""Every fidelity gate seen failing on a model that is really wrong, and passing a right one on each
instruction set this CPU has (OpenVINO's kernels limited with ONEDNN_MAX_CPU_ISA).

The faults are real: DS2IR_INJECT_FAULT (ds2ir.model.fault_injection) makes the stage containers run the IR
with a weight 1% off, without a bias, or with its state outputs swapped, or makes verify's numpy
features 1% off TF's audio ops. synthetic-small keeps it fast.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ds2ir.errors import ContainerError
from ds2ir.model.fault_injection import ENV
from ds2ir.model.layout import ArtifactLayout
from tests._support.checkout import DATA
from tests.e2e.helpers import invoke, stage_command

TARGET = "synthetic-small"
GATE_LINE = r"(logits|state_c|state_h) \(window \d+\): \|IR - f64\| [0-9.e+-]+ > bound [0-9.e+-]+ \(\|TF - f64\| [0-9.e+-]+\)"


@pytest.fixture(scope="module")
def gates(tmp_path_factory):
    """A build whose check sees an IR without its first bias, then the same build without the fault."""
    artifacts = tmp_path_factory.mktemp("gates")
    failed = invoke("build", "--target", TARGET, "--artifacts", str(artifacts), env={ENV: "bias"}, check=False)
    layout = ArtifactLayout(artifacts, TARGET)
    after_failure = {"stamp": (layout.stamps_dir / "check.json").exists(),
                     "report": json.loads((layout.check_dir / "report.json").read_text())}
    rebuilt = invoke("build", "--target", TARGET, "--artifacts", str(artifacts))
    return {"artifacts": artifacts, "layout": layout, "failed": failed, "after_failure": after_failure, "rebuilt": rebuilt}


def test_build_fails_on_a_wrong_ir_naming_the_output_and_its_error(gates):
    failed = gates["failed"]
    assert failed.returncode != 0
    assert "does not compute the frozen graph" in failed.stdout and re.search(GATE_LINE, failed.stdout), failed.stdout[-3000:]
    report = gates["after_failure"]["report"]
    assert report["passed"] is False and report["fidelity"]["worst_ratio"] > 10
    assert gates["after_failure"]["stamp"] is False  # nothing calls this IR good


def test_the_next_build_reruns_the_check_alone_and_passes(gates):
    output = gates["rebuilt"].stdout
    assert f"[{TARGET}] check: running (never built)" in output
    for stage in ("checkpoint", "freeze", "reference", "convert"):
        assert f"[{TARGET}] {stage}: up to date, skipped" in output, stage
    assert json.loads((gates["layout"].check_dir / "report.json").read_text())["passed"] is True


@pytest.mark.parametrize("fault", ["weight", "state"])
def test_check_fails_a_perturbed_weight_and_a_wrongly_carried_state(docker, gates, monkeypatch, fault):
    monkeypatch.setenv(ENV, fault)
    with pytest.raises(ContainerError) as raised:
        stage_command(docker, TARGET, "convert", ["check"], gates["artifacts"])
    assert re.search(GATE_LINE, raised.value.log_tail), raised.value.log_tail


@pytest.mark.parametrize("limit, kernels", [("AVX2", "avx2"), ("SSE41", "sse")])
def test_check_passes_the_right_ir_on_narrower_kernels(docker, gates, monkeypatch, limit, kernels):
    """Summation orders change with the vector width; the gate must hold on each (AVX-512 where the CPU has it)."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", limit)
    output = stage_command(docker, TARGET, "convert", ["check"], gates["artifacts"])
    report = json.loads((gates["layout"].check_dir / "report.json").read_text())
    assert report["passed"] is True and json.loads(output.strip().splitlines()[-1])["passed"] is True
    assert any(kernels in kernel for kernel in report["isa"]), report["isa"]
    assert not any("avx512" in kernel for kernel in report["isa"]), report["isa"]
    if limit == "SSE41":
        assert not any("avx" in kernel for kernel in report["isa"]), report["isa"]
    print(f"{limit}: kernels {report['isa']}, |IR - f64| {report['ir_vs_f64']:.3g}, |TF - f64| {report['tf_vs_f64']:.3g}")


def test_reference_on_another_openblas_core_keeps_the_gate(docker, gates, monkeypatch):
    """OPENBLAS_CORETYPE reaches the freeze image and takes effect: the float64 reference computed with
    Prescott's (SSE3) BLAS kernels still passes the right IR."""
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott")
    stage_command(docker, TARGET, "freeze", ["reference"], gates["artifacts"])
    with np.load(str(gates["layout"].check_dir / "tf_reference.npz")) as data:
        engine = json.loads(str(data["engine"]))
    assert engine["numpy_openblas"] == "Prescott" and engine["tensorflow"].startswith("mkl-dnn sgemm"), engine
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    stage_command(docker, TARGET, "convert", ["check"], gates["artifacts"])
    assert json.loads((gates["layout"].check_dir / "report.json").read_text())["passed"] is True


@pytest.mark.parametrize("fault, reason", [("weight", GATE_LINE), ("features", r"features \|numpy - TF ops\| [0-9.e+-]+ > 0\.0001")])
def test_verify_fails_a_wrong_ir_and_wrong_features(gates, fault, reason):
    invoke("build", "--target", TARGET, "--artifacts", str(gates["artifacts"]))  # good again after the direct checks above
    result = invoke("verify", "--target", TARGET, "--audio", str(DATA / "LDC93S1.wav"),
                    "--artifacts", str(gates["artifacts"]), env={ENV: fault}, check=False)
    assert result.returncode != 0 and "does not match TensorFlow" in result.stdout
    assert re.search(reason, result.stdout), result.stdout[-3000:]
    assert f"[{TARGET}] check: up to date, skipped" in result.stdout  # the build itself stays good
    report = json.loads((gates["layout"].verify_dir / "report.json").read_text())
    assert report["passed"] is False
