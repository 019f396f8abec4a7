"""The invoke tasks no other test runs, each run as a user would, and what a build records.

Most work on a private copy of `given-small`'s artifacts (tests/e2e/workspace.py); tasks
that write into the checkout (compose-env, lock-outputs, compose) run in a private copy of it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from ds2ir.errors import ContainerError
from ds2ir.host.clean import TARGET_MARK
from ds2ir.host.compose import compose_environment
from ds2ir.host.images import ensure_stage_image, stage_image_tag
from ds2ir.host.manifest import output_files
from ds2ir.model.bench import IR_SETTINGS, SETTING_ROUNDS
from ds2ir.model.layout import CONTAINER_ARTIFACTS, ArtifactLayout
from ds2ir.model.targets_file import TargetsFile, load_target
from ds2ir.model.verify import tolerance_for
from ds2ir.stages.convert import mo_command
from tests._support.checkout import DATA, targets_file
from tests._support.stages import run_stage
from tests.e2e.helpers import PROJECT, invoke, last_json
from tests.e2e.workspace import STAGES, TARGET, Workspace, checkout_copy, ran


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_records_the_target_inputs_outputs_images_and_stages(docker, space):
    layout = space.layout
    manifest = json.loads((layout.target_dir / "manifest.json").read_text())
    target = TargetsFile.load(space.targets).target(TARGET)
    assert manifest["target"] == target.fingerprint()
    checkpoint_files = sorted(p for p in layout.checkpoint_dir.iterdir())
    assert manifest["inputs"] == {f"{TARGET}/checkpoint/{p.name}": sha256(p) for p in checkpoint_files}
    assert manifest["outputs"] == {name: sha256(path) for name, path in output_files(layout).items()}
    assert {"frozen/output_graph.pb", "ir/output_graph.xml", "ir/output_graph.bin"} <= set(manifest["outputs"])
    assert manifest["docker_server"] == docker.preflight()
    packages = {"freeze": "tensorflow==1.15.5", "convert": "openvino==2024.6.0"}
    for stage, spec in (("freeze", target.freeze_image), ("convert", target.convert_image)):
        image = manifest["images"][stage]
        assert image["tag"] == stage_image_tag(docker, spec, docker.resolve_base_image(spec.base_image), PROJECT)
        assert image["id"] == docker.image_id(image["tag"]) and image["id"].startswith("sha256:")
        assert image["base_image"] == docker.resolve_base_image(spec.base_image)
        assert packages[stage] in image["packages"] and image["packages"] == sorted(image["packages"])
    assert list(manifest["stages"]) == sorted(STAGES)
    for name, stage in manifest["stages"].items():
        assert stage["command"] == ["python", "-m", "ds2ir", name, "--target", TARGET]
        assert stage["image"] == manifest["images"]["freeze" if name in ("freeze", "reference") else "convert"]["tag"]
        assert stage["seconds"] > 0
    assert manifest["mo"] == json.loads((layout.ir_dir / "conversion.json").read_text())


def test_conversion_json_records_the_mo_command_and_openvino(space):
    conversion = json.loads((space.layout.ir_dir / "conversion.json").read_text())
    target = TargetsFile.load(space.targets).target(TARGET)
    inside = ArtifactLayout(CONTAINER_ARTIFACTS, TARGET)
    assert conversion["converter"] == "mo"
    assert conversion["command"] == mo_command(target, inside.frozen_graph)
    assert "--compress_to_fp16=False" in conversion["command"]
    assert re.fullmatch(r"2024\.6\.\d+.*", conversion["openvino"]), conversion


def files(directory):
    """relative path -> content of every file under ``directory`` but the build locks."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*")
            if p.is_file() and not p.name.endswith(".lock")}


def test_dry_run_prints_every_stage_command_and_changes_nothing(space):
    before = files(space.artifacts)
    output = space.build("--dry-run", "--force").stdout
    assert ran(output) == STAGES
    commands = [line for line in output.splitlines() if line.startswith("$ docker run ")]
    assert [line.split(" --target ")[0].rsplit(" ", 1)[1] for line in commands] == STAGES
    checkpoint_mount = f"--mount type=bind,source={space.layout.checkpoint_dir},target=/artifacts/{TARGET}/checkpoint,readonly"
    assert all(checkpoint_mount in line for line in commands)  # every stage sees the checkpoint read-only
    assert files(space.artifacts) == before  # the stamps too: a forced dry run must not make the next build rerun
    assert ran(space.build().stdout) == []


def test_dry_run_from_nothing_writes_nothing(tmp_path):
    output = invoke("build", "--target", "synthetic-small", "--dry-run", "--artifacts", str(tmp_path)).stdout
    commands = [line for line in output.splitlines() if line.startswith("$ docker run ")]
    assert [line.split(" --target ")[0].rsplit(" ", 1)[1] for line in commands] == [
        "make-checkpoint", "freeze", "reference", "convert", "check"]
    assert not (tmp_path / "synthetic-small").exists()


def test_the_checkpoint_mount_refuses_writes(docker, space):
    image = ensure_stage_image(docker, load_target(targets_file(), "synthetic-small").freeze_image, PROJECT)
    probe = f"open('/artifacts/{TARGET}/checkpoint/best_dev-1.index', 'ab').write(b'x')"
    with pytest.raises(ContainerError) as excinfo:
        run_stage(docker, step="write probe", image=image, args=["-c", probe], artifacts=space.artifacts,
                         targets=targets_file(), entrypoint="python",
                         read_only={space.layout.checkpoint_dir: f"/artifacts/{TARGET}/checkpoint"})
    assert "OSError: [Errno 30] Read-only file system" in excinfo.value.log_tail


def test_convert_task_stops_before_the_check(space):
    report = (space.layout.check_dir / "report.json").read_bytes()
    for path in space.layout.ir_dir.iterdir():
        path.unlink()
    output = space.build(task="convert").stdout
    assert ran(output) == ["convert"] and f"[{TARGET}] check:" not in output
    assert space.layout.ir_bin.is_file() and (space.layout.check_dir / "report.json").read_bytes() == report


def test_clean_removes_the_named_target_then_all(space):
    other = space.artifacts / "synthetic-small"
    shutil.copytree(str(space.layout.target_dir), str(other), symlinks=True)  # a second built target
    (other / TARGET_MARK).write_text("synthetic-small\n")
    output = space.invoke("clean", "--target", TARGET, "--artifacts", str(space.artifacts)).stdout
    assert output.strip() == f"removed {space.artifacts / TARGET}"
    assert not space.layout.target_dir.exists() and other.is_dir()
    output = space.invoke("clean", "--artifacts", str(space.artifacts)).stdout
    assert output.strip() == f"removed {other}"
    assert ".cache" in [p.name for p in space.artifacts.iterdir()]  # caches and build locks stay
    assert all(p.name.startswith(".") for p in space.artifacts.iterdir())


def test_images_task_prints_the_content_tags(docker):
    output = invoke("images", "--target", "synthetic-small").stdout
    target = load_target(targets_file(), "synthetic-small")
    for spec in (target.freeze_image, target.convert_image):
        tag = stage_image_tag(docker, spec, docker.resolve_base_image(spec.base_image), PROJECT)
        assert f"{spec.stage}: {tag}\n" in output and docker.image_id(tag)


def test_base_images_if_missing_names_an_image_here_for_every_base(docker):
    output = invoke("base-images", "--if-missing").stdout
    named = [line for line in output.splitlines() if line and not line.startswith(("$", "offline base image", "base image"))]
    publics = sorted({spec.base_image for spec in TargetsFile.load(targets_file()).images.values()})
    assert len(named) == len(publics), output
    assert all(docker.image_id(name) for name in named), named


def test_test_task_runs_pytest(tmp_path):
    result = invoke("test", "--unit", "-k", "test_write_json_is_sorted_and_stable")
    assert re.search(r"\b1 passed\b", result.stdout), result.stdout[-2000:]


def test_compose_env_regenerates_the_committed_env(tmp_path):
    project = checkout_copy(tmp_path / "checkout")
    (project / ".env").unlink()
    subprocess.run([sys.executable, "-m", "invoke", "-r", str(project), "compose-env"], cwd=str(project), check=True,
                   env=dict(os.environ, PYTHONPATH=str(project / "src")), stdout=subprocess.DEVNULL)
    assert (project / ".env").read_text() == (PROJECT / ".env").read_text()


def test_lock_outputs_records_the_built_hashes(space, tmp_path):
    space.project = checkout_copy(tmp_path / "checkout")
    output = space.build(task="lock-outputs").stdout
    locked = json.loads((space.project / "outputs.lock.json").read_text())[TARGET]
    assert ran(output) == [] and f"recorded {len(locked)} output hashes in outputs.lock.json" in output
    assert locked == {name: sha256(path) for name, path in output_files(space.layout).items()}
    assert json.loads((PROJECT / "outputs.lock.json").read_text()).get(TARGET) is None  # the checkout untouched


def test_verify_and_transcribe_at_bf16_on_a_named_device(space):
    recording = DATA / "LDC93S1.wav"
    space.build("--precision", "bf16", "--audio", str(recording), task="verify")
    report = json.loads((space.layout.verify_dir / "report.json").read_text())
    assert report["inference_precision"] == "bf16" and report["passed"] is True
    assert report["tolerance"] == tolerance_for("FP32", "bf16") > tolerance_for("FP32", "f32")
    # the IR side ran in the application image's runtime, not in the convert image's
    target = TargetsFile.load(space.targets).target(TARGET)
    app_pin, convert_pin = (re.search(r"^openvino==([\d.]+)", (PROJECT / spec.lock).read_text(), re.MULTILINE)
                            for spec in (target.application_image, target.convert_image))
    assert app_pin and convert_pin and app_pin.group(1) != convert_pin.group(1)
    assert report["openvino"].startswith(app_pin.group(1)), report["openvino"]
    output = space.invoke("transcribe", str(recording), "--target", TARGET, "--artifacts", str(space.artifacts),
                          "--device", "CPU", "--precision", "bf16").stdout
    stats = last_json(output)
    assert (stats["device"], stats["precision"]) == ("CPU", "bf16") and stats["audio_seconds"] == pytest.approx(2.9, abs=0.05)


def test_coverage_is_measured_inside_the_stage_containers(tmp_path):
    """stages/tf_features.py runs only in the freeze image (TensorFlow): its lines are covered only if the
    container's data came back through the mount and was mapped onto src/."""
    result = invoke("test", "--coverage", "-k", "test_numpy_features_match_tensorflow_ops")
    assert re.search(r"\b1 passed\b", result.stdout), result.stdout[-3000:]
    row = re.search(r"^src/ds2ir/stages/tf_features\.py\s+(\d+)\s+(\d+)\s+(\d+)%", result.stdout, flags=re.MULTILINE)
    assert row and int(row.group(3)) >= 50, result.stdout[-3000:]
    assert re.search(r"^TOTAL\s+\d+\s+\d+\s+\d+%", result.stdout, flags=re.MULTILINE)


BENCH_SMALL = """
[targets."bench-small"]
description = "synthetic-small under another seed, listing no other variant, so the bench times one IR"
extends = "synthetic-small"
seed = 7
variants = []
"""


def test_bench_times_every_engine_against_the_bound_and_writes_its_tables(tmp_path):
    space = Workspace(tmp_path, tmp_path / "artifacts", (PROJECT / "targets.toml").read_text() + BENCH_SMALL)
    recording = DATA / "LDC93S1.wav"
    output = space.invoke("bench", "--target", "bench-small", "--artifacts", str(space.artifacts), "--repeat", "1",
                          "--audio", str(recording)).stdout
    bench = space.artifacts / "bench"
    assert output.endswith((bench / "results.md").read_text()), output[-3000:]
    data = json.loads((bench / "results.json").read_text())
    keys = [row["key"] for row in data["rows"]]
    assert keys[0] == "ir-fp32-f32" and {"ir-fp32-default", "tf-1.15.5", "native-0.9.3"} <= set(keys), keys
    assert any(key.startswith("tf-2.") for key in keys), keys
    assert list(data["variants"]) == ["fp32"] and data["variants"]["fp32"]["target"] == "bench-small"
    windows = data["raw"]["ir-fp32-f32"]["windows"]
    for row in data["rows"]:
        assert row["bound"] > 0 and row["window"]["min"] <= row["window"]["median"] <= row["window"]["p90"], row
    # the f32 IR ran in every round of settings: its passes pooled from SETTING_ROUNDS containers
    assert len(data["raw"]["ir-fp32-f32"]["pass_seconds"]) == SETTING_ROUNDS and windows >= 1
    assert [row["engine"] for row in data["settings_rows"]] == [label for _, label, _ in IR_SETTINGS]
    assert data["bandwidth_gb_s"] > 0 and {"copy", "read"} == set(data["bandwidth_measured_gb_s"])
    assert data["build_costs"]["no-op rebuild, s"] < data["build_costs"]["warm rebuild after clean, s"]
    assert {f"stage {name}, s" for name in ("checkpoint", *STAGES)} <= set(data["build_costs"])
    assert (bench / "bench.png").read_bytes().startswith(b"\x89PNG") and not (bench / "rebuild").exists()


def test_lock_compiles_the_committed_locks_again(tmp_path):
    """`invoke lock` without --upgrade keeps every pin: from the committed inputs it writes the committed
    locks again (the host's and those of a targets file with three small images, to keep it short)."""
    project = checkout_copy(tmp_path / "checkout")
    images = ("freeze-tf1.15.5", "convert-ov2024.6-notf", "app-ov2025.3")
    targets = tmp_path / "targets.toml"
    target = ['[targets."t"]', 'release = "0.8.2"', 'checkpoint = "synthetic"', 'ir_precision = "FP32"',
              *(f'{key} = "{name}"' for key, name in zip(("freeze_image", "convert_image", "app_image"), images))]
    targets.write_text("\n".join(['default_target = "t"', *(table(f'images."{name}"') for name in images),
                                  table('releases."0.8.2"'), *target]) + "\n")
    written = ["locks/host.txt", *(f"locks/{name}.txt" for name in images)]
    for lock in written:
        with open(project / lock, "a") as handle:
            handle.write("# a line no lock compiler writes\n")
    result = subprocess.run([sys.executable, "-m", "invoke", "-r", str(project), "lock"], cwd=str(project),
                            env=dict(os.environ, PYTHONPATH=str(project / "src"), DS2IR_TARGETS=str(targets)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert re.findall(r"^wrote (\S+)$", result.stdout, flags=re.MULTILINE) == written
    for lock in written:
        new, committed = (project / lock).read_text(), (PROJECT / lock).read_text()
        assert "no lock compiler" not in new and pins(new) == pins(committed) != [], lock
        hashed = re.findall(r"^(\S+==\S+) \\\n    --hash=sha256:[0-9a-f]{64}", new, flags=re.MULTILINE)
        assert hashed == pins(new), lock  # every pin carries its files' digests (pip --require-hashes)


def table(header):
    """One table of the checkout's targets.toml, as text."""
    text = (PROJECT / "targets.toml").read_text()
    start = text.index(f"[{header}]")
    return text[start:text.index("\n[", start)]


def pins(lock_text):
    """The ``name==version`` lines of a hashed lock."""
    return re.findall(r"^(\S+==\S+) \\$", lock_text, flags=re.MULTILINE)


def test_compose_task_runs_both_services_for_a_target(docker, tmp_path):
    project = checkout_copy(tmp_path / "ds2ircomposetask")  # compose's project name: the directory's
    env = dict(os.environ, PYTHONPATH=str(project / "src"))
    try:
        result = subprocess.run([sys.executable, "-m", "invoke", "-r", str(project), "compose", "--target", "synthetic-small"],
                                cwd=str(project), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True)
    finally:
        subprocess.run([*docker.compose_command(), "down"], cwd=str(project), env=dict(env, **compose_environment(
            load_target(targets_file(), "synthetic-small"))), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-4000:]
    layout = ArtifactLayout(project / "artifacts", "synthetic-small")
    assert json.loads((layout.check_dir / "report.json").read_text())["passed"] is True
    assert layout.ir_bin.is_file() and layout.frozen_graph.stat().st_uid == os.getuid()  # written as the caller
