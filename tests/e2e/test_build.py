"""`invoke build` end to end through the real freeze and convert containers."""
from __future__ import annotations

import json
import os
import time

import numpy as np

from ds2ir.host.images import ensure_stage_image
from ds2ir.model.architecture import LSTM_SCOPE
from ds2ir.model.layout import TARGETS_ENV, ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file
from tests.e2e.helpers import PROJECT, invoke, last_json, stage_command

LSTM = LSTM_SCOPE
SEED_GRAPH_NODES = {
    "input_node": "Placeholder", "input_lengths": "Placeholder",
    "previous_state_c": "Placeholder", "previous_state_h": "Placeholder",
    "input_samples": "Placeholder", "mfccs": "Identity", "logits": "Softmax",
    "new_state_c": "Identity", "new_state_h": "Identity",
    f"{LSTM}/GatherNd": "GatherNd", f"{LSTM}/GatherNd_1": "GatherNd", f"{LSTM}/BlockLSTM": "BlockLSTM",
    "metadata_version": "Const", "metadata_sample_rate": "Const", "metadata_feature_win_len": "Const",
    "metadata_feature_win_step": "Const", "metadata_beam_width": "Const", "metadata_alphabet": "Const",
    "metadata_language": "Const", "raw_logits": "Reshape", "raw_logits/shape": "Const",
}


def layout(full_build) -> ArtifactLayout:
    return ArtifactLayout(full_build["artifacts"], "synthetic-0.8.2")


def test_build_writes_checkpoint_frozen_graph_and_ir(full_build):
    paths = layout(full_build)
    assert sorted(p.name for p in paths.checkpoint_dir.iterdir()) == [
        "alphabet.txt", "best_dev-1.data-00000-of-00001", "best_dev-1.index", "best_dev_checkpoint", "checkpoint", "flags.txt",
    ]
    for path in (paths.frozen_graph, paths.ir_xml, paths.ir_bin):
        assert path.stat().st_size > 0, path
    # 2048-wide release architecture: the LSTM kernel alone is 4096 x 8192 floats.
    assert paths.ir_bin.stat().st_size > 4096 * 8192 * 4
    leftovers = [p for p in paths.target_dir.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_artifacts_belong_to_the_caller(full_build):
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in layout(full_build).target_dir.rglob("*")}
    assert owners == {(os.getuid(), os.getgid())}


def test_frozen_graph_has_the_seed_nodes(docker, full_build):
    nodes = last_json(stage_command(docker, "synthetic-0.8.2", "freeze", ["inspect-graph"], full_build["artifacts"]))
    assert {name: nodes.get(name) for name in SEED_GRAPH_NODES} == SEED_GRAPH_NODES
    assert not any(op == "VariableV2" for op in nodes.values())


def test_ir_has_the_seed_inputs_and_outputs(docker, full_build):
    described = last_json(stage_command(docker, "synthetic-0.8.2", "convert", ["inspect-ir"], full_build["artifacts"]))
    assert described == {
        "inputs": {"input_node": [1, 16, 19, 26], "previous_state_c": [1, 2048], "previous_state_h": [1, 2048]},
        "outputs": {"logits": [16, 1, 29], "state_c": [1, 2048], "state_h": [1, 2048]},
    }


def test_ir_is_as_close_to_float64_as_tensorflow(full_build):
    paths = layout(full_build)
    report = json.loads((paths.check_dir / "report.json").read_text())
    assert report["inference_precision"] == "f32" and report["windows"] == 3
    for name in ("logits", "state_c", "state_h"):
        gate = report["fidelity"]["outputs"][name]
        # The float64 model computes the graph: TF's float32 rounding is all that separates them.
        assert 0 < gate["tf_vs_f64"] < 1e-4 and gate["ir_vs_f64"] < 1e-4, (name, gate)
        assert gate["worst_ratio"] <= 1 and len(gate["per_window_bound"]) == 3, (name, gate)
        assert report["outputs"][name]["max_scaled"] <= report["outputs"][name]["max_abs"]  # |IR - TF|, information
    assert report["passed"] is True and report["tolerance"] == 0.0
    assert any("avx" in kernel or "sse" in kernel for kernel in report["isa"]), report["isa"]


def test_synthetic_weights_give_realistic_activations(full_build):
    with np.load(str(layout(full_build).check_dir / "tf_reference.npz")) as data:
        state_h, logits = data["tf_state_h"], data["tf_logits"]
    saturated = np.mean(np.abs(state_h) > 0.999)
    assert 0.05 < float(np.std(state_h)) and saturated < 0.5
    assert len(np.unique(np.argmax(logits, axis=-1))) > 1  # not one class everywhere
    np.testing.assert_allclose(logits.sum(axis=-1), 1.0, atol=1e-5)


def test_second_build_runs_nothing(full_build):
    started = time.monotonic()
    result = invoke("build", "--target", "synthetic-0.8.2", "--artifacts", str(full_build["artifacts"]))
    elapsed = time.monotonic() - started
    for stage in ("checkpoint", "freeze", "reference", "convert", "check"):
        assert f"[synthetic-0.8.2] {stage}: up to date, skipped" in result.stdout
    assert "ran: nothing (all up to date)" in result.stdout
    print(f"no-op build: {elapsed:.2f} s")


def test_checkpoint_missing_a_variable_fails_clearly_and_writes_nothing(docker, tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text()
                       + '\n[targets.broken-small]\nextends = "synthetic-small"\ncheckpoint = "release"\n')
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    env = {TARGETS_ENV: str(targets)}
    script = (
        "import os; from pathlib import Path; from ds2ir.stages.freeze import checkpoint; "
        "from ds2ir.model.layout import CONTAINER_ARTIFACTS, ArtifactLayout; from ds2ir.model.targets_file import load_target; "
        "t = load_target(Path(os.environ['DS2IR_TARGETS']), 'broken-small'); "
        "v = checkpoint.synthetic_variables(t.architecture, t.alphabet, 1); del v['layer_2/bias']; "
        "checkpoint.save(ArtifactLayout(CONTAINER_ARTIFACTS, t.name).checkpoint_dir, v, "
        "alphabet=t.alphabet, arch=t.architecture)"
    )
    image = ensure_stage_image(docker, load_target(targets_file(), "synthetic-small").freeze_image, PROJECT)
    docker.runner.run(["docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
                       "-v", f"{artifacts}:/artifacts", "-v", f"{targets}:/etc/ds2ir/targets.toml:ro",
                       "--entrypoint", "python", image, "-c", script], step="write broken checkpoint")

    result = invoke("build", "--target", "broken-small", "--artifacts", str(artifacts), env=env, check=False)
    assert result.returncode != 0
    assert "missing variable layer_2/bias" in result.stdout and "Step 'freeze' failed" in result.stdout
    assert "Traceback" not in result.stdout
    paths = ArtifactLayout(artifacts, "broken-small")
    assert not paths.frozen_dir.exists() and not paths.ir_dir.exists()


def test_release_target_without_checkpoint_says_what_is_missing(tmp_path):
    result = invoke("build", "--artifacts", str(tmp_path), check=False)
    assert result.returncode != 0
    assert "deepspeech-0.8.2-checkpoint.tar.gz" in result.stdout and "synthetic-0.8.2" in result.stdout
    assert "Traceback" not in result.stdout
    assert not (tmp_path / "deepspeech-0.8.2" / "frozen").exists()


def test_dead_docker_daemon_is_reported_before_any_work(tmp_path):
    result = invoke("build", "--target", "synthetic-small", "--artifacts", str(tmp_path / "a"),
                    env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, check=False)
    assert result.returncode != 0
    assert "No Docker daemon answers at DOCKER_HOST=unix:///nonexistent/docker.sock" in result.stdout
    assert "Traceback" not in result.stdout and not (tmp_path / "a").exists()
