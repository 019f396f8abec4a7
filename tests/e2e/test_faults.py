"""Faults produced for real against `invoke build`: killed processes and containers, two builds at once,
no or unreachable Docker, read-only and full filesystems, corrupted outputs, failing containers, a stage
past its time limit.

docs/faults.md lists each fault, what the user sees and the test here that proves it.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from ds2ir import atomic
from ds2ir.host.docker import ARTIFACTS_LABEL
from ds2ir.model.layout import TARGETS_ENV, ArtifactLayout
from tests._support.faults import fill, kill, kill_group, remount_read_only, tmpfs, tree_digests, wait_for
from tests.e2e.helpers import PROJECT, invoke

TARGET = "synthetic-small"
STAGES = ("checkpoint", "freeze", "reference", "convert", "check")
# Files that are expected to change from build to build; everything else is an output.
BOOKKEEPING = re.compile(r"(^|/)(\.stamps/|manifest\.json$|\.ds2ir\.lock$|\.cache/)")
# How long into a stage to kill it: the freeze container lives ~3 s, convert ~16 s.
KILL_AFTER = {"freeze": 0.5, "convert": 4.0}
NOWHERE_IMAGE = """
[images."freeze-nowhere"]
stage = "freeze"
dockerfile = "Dockerfile.freeze"
base_image = "ds2ir-test-nowhere/python:3.7-slim"
python = "3.7"
lock = "locks/freeze-tf1.15.5.txt"

[targets."nowhere-small"]
extends = "synthetic-small"
freeze_image = "freeze-nowhere"
"""


def build_args(artifacts: Path, *extra: str) -> List[str]:
    return ["build", "--target", TARGET, "--artifacts", str(artifacts), *extra]


def start_build(artifacts: Path, log: Path, *extra: str) -> subprocess.Popen:
    """`invoke build` in its own session (so the test can end what it leaves), output to ``log``."""
    with open(str(log), "w") as out:
        return subprocess.Popen([sys.executable, "-m", "invoke", "-r", str(PROJECT), *build_args(artifacts, *extra)],
                                cwd=str(PROJECT), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def containers(artifacts: Path, step: str = "", running: bool = False) -> List[str]:
    """Names of the stage containers (of ``step``) working on ``artifacts``, by their label."""
    argv = ["docker", "ps", "-a", "--filter", f"label={ARTIFACTS_LABEL}={artifacts.resolve()}", "--format", "{{.Names}}"]
    argv += ["--filter", "status=running"] if running else []
    names = subprocess.run(argv, stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout.split()
    return [name for name in names if name.startswith(f"ds2ir-{step}")]


def outputs(artifacts: Path) -> Dict[str, str]:
    return {name: digest for name, digest in tree_digests(artifacts / TARGET).items() if not BOOKKEEPING.search(name)}


def temporaries(artifacts: Path) -> List[Path]:
    return list((artifacts / TARGET).rglob(f"*{atomic.TEMP_MARK}*"))


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stdout, result.stdout
    for fragment in fragments:
        assert fragment in result.stdout, (fragment, result.stdout[-3000:])


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory) -> Iterator[Dict[str, object]]:
    """Two `invoke build` on one empty artifacts directory, the second started while the first runs."""
    root = tmp_path_factory.mktemp("two-builds")
    artifacts = root / "artifacts"
    first = start_build(artifacts, root / "first.log")
    try:
        wait_for(lambda: containers(artifacts), timeout=300, what="the first build's first container")
        second = start_build(artifacts, root / "second.log")
        try:
            codes = (first.wait(timeout=600), second.wait(timeout=600))
        finally:
            kill_group(second)
    finally:
        kill_group(first)
    yield {"artifacts": artifacts, "codes": codes,
           "first": (root / "first.log").read_text(), "second": (root / "second.log").read_text()}


@pytest.fixture
def good_copy(two_builds, tmp_path) -> Path:
    """A private copy of the complete, up-to-date artifacts directory."""
    copy = tmp_path / "artifacts"
    shutil.copytree(str(two_builds["artifacts"]), str(copy), symlinks=True)
    return copy


# -- 2. two builds at once ------------------------------------------------------


def test_second_build_waits_for_the_first_and_finds_everything_done(two_builds):
    assert two_builds["codes"] == (0, 0), two_builds["first"][-3000:] + two_builds["second"][-3000:]
    first, second = two_builds["first"], two_builds["second"]
    artifacts = two_builds["artifacts"]
    assert f"another ds2ir build holds {artifacts}/.locks/{TARGET}.lock; waiting for it to finish" in second
    for stage in STAGES:
        assert f"[{TARGET}] {stage}: running (never built)" in first
        assert f"[{TARGET}] {stage}: up to date, skipped" in second  # it wrote nothing: no interleaving
    assert "ran: nothing (all up to date)" in second
    report = ArtifactLayout(artifacts, TARGET).check_dir / "report.json"
    assert '"passed": true' in report.read_text()
    assert temporaries(artifacts) == [] and containers(artifacts) == []


# -- 1. kill -9 of the orchestrator or of the stage container -------------------


@pytest.mark.parametrize("stage", ["freeze", "convert"])
@pytest.mark.parametrize("victim", ["orchestrator", "container"])
def test_kill_9_mid_stage_loses_nothing_and_the_next_build_recovers(good_copy, tmp_path, victim, stage):
    artifacts, good = good_copy, outputs(good_copy)
    log = tmp_path / "killed.log"
    proc = start_build(artifacts, log, "--force")  # the user asked for a full rebuild, and it gets killed
    try:
        name = wait_for(lambda: containers(artifacts, stage, running=True), timeout=120,
                        what=f"the {stage} container")[0]  # type: ignore[index]
        time.sleep(KILL_AFTER[stage])
        if victim == "orchestrator":
            assert kill(proc) == -9
            # The orphaned `docker run` client keeps its container running; pause it so it
            # cannot finish on its own before the next build starts (freeze takes 3 s).
            subprocess.run(["docker", "pause", name], check=True, stdout=subprocess.DEVNULL)
            assert containers(artifacts, stage) == [name]
        else:
            subprocess.run(["docker", "kill", name], check=True, stdout=subprocess.DEVNULL)
            assert proc.wait(timeout=60) == 2
            killed = log.read_text()
            assert f"Step '{stage}' failed with exit code 137. The container was killed" in killed
            assert "Traceback" not in killed
        for relative, digest in outputs(artifacts).items():  # a final name holds the whole file or nothing
            assert good.get(relative) == digest, relative
        assert not (ArtifactLayout(artifacts, TARGET).stamps_dir / f"{stage}.json").exists()

        recovered = invoke(*build_args(artifacts))  # no --force
        if victim == "orchestrator":
            assert f"removed stray container {name}" in recovered.stdout
        assert f"[{TARGET}] {stage}: running (never built)" in recovered.stdout
        assert re.search(rf"ran: {stage} [\d.]+ s;", recovered.stdout), recovered.stdout  # only the interrupted stage
        assert outputs(artifacts) == good
        assert temporaries(artifacts) == [] and containers(artifacts) == []
    finally:
        kill_group(proc)  # the orphaned docker client, if it still runs


# -- 3. no usable Docker, base image that cannot be had ----------------------------


def test_daemon_not_running_is_reported_before_any_work(tmp_path):
    # A private mount namespace where the daemon's socket is gone: the real daemon keeps running.
    socket_path = Path("/var/run/docker.sock").resolve()
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind /dev/null {socket_path} && exec "$@"', "sh",
            sys.executable, "-m", "invoke", "-r", str(PROJECT), *build_args(tmp_path / "a")]
    result = subprocess.run(argv, cwd=str(PROJECT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    if "unshare failed" in result.stdout or "mount:" in result.stdout:
        pytest.skip(f"cannot make a private mount namespace here (needs root): {result.stdout.strip()}")
    assert_clean_error(result, "The Docker daemon is not running (no answer on the local socket). Start it")
    assert not (tmp_path / "a").exists()


def test_socket_without_permission_is_reported_before_any_work(tmp_path):
    # A listening socket nobody may open; root bypasses file modes, so the build runs without
    # CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH, as an ordinary user outside the docker group would.
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv (util-linux) to drop the capabilities")
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(1)
        path.chmod(0)
        result = subprocess.run(
            ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", sys.executable, "-m", "invoke",
             "-r", str(PROJECT), *build_args(tmp_path / "a")],
            cwd=str(PROJECT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
            env={**os.environ, "DOCKER_HOST": f"unix://{path}"})
    assert_clean_error(result, f"The Docker daemon's socket unix://{path} is not accessible to this user "
                               "(permission denied). Add yourself to the 'docker' group")
    assert not (tmp_path / "a").exists()


def test_base_image_that_cannot_be_pulled_offline_fails_before_any_work(tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text() + NOWHERE_IMAGE)
    result = invoke("build", "--target", "nowhere-small", "--artifacts", str(tmp_path / "a"),
                    env={TARGETS_ENV: str(targets)}, check=False)
    assert_clean_error(
        result, "The base image ds2ir-test-nowhere/python:3.7-slim of image 'freeze-nowhere' "
                "([images.\"freeze-nowhere\"].base_image of the targets file) is not on this host, has no offline stand-in",
        "cannot be pulled", "invoke base-images")
    assert "Step 1/" not in result.stdout and "docker run" not in result.stdout  # nothing built or run
    assert not (tmp_path / "a" / "nowhere-small").exists()


def test_doctor_passes_on_a_ready_host(tmp_path):
    result = invoke("doctor", "--artifacts", str(tmp_path / "a"))
    for name in ("docker client", "container engine", "engine platform", "targets file", "base image of freeze-tf1.15.5",
                 "base image of convert-ov2024.6", "free space for artifacts", "write access to artifacts"):
        assert f"[  ok] {name}: " in result.stdout, (name, result.stdout)
    assert result.stdout.rstrip().endswith("ready to build")


def test_doctor_lists_every_blocking_problem_at_once(tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text() + NOWHERE_IMAGE)
    with tmpfs(tmp_path / "small", "4m") as disk:
        remount_read_only(disk)
        result = invoke("doctor", "--artifacts", str(disk / "artifacts"), env={TARGETS_ENV: str(targets)},
                        check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout, result.stdout
    assert "[  ok] container engine: client 'docker', daemon at unix:///var/run/docker.sock: version " in result.stdout
    assert "[FAIL] base image of freeze-nowhere: The base image ds2ir-test-nowhere/python:3.7-slim" in result.stdout
    assert f"[FAIL] free space for artifacts: Only 4 MiB are free on the filesystem of {disk}" in result.stdout
    assert f"[FAIL] write access to artifacts: Cannot write {disk}: Read-only file system" in result.stdout
    assert "3 problem(s) would stop a build" in result.stdout


def test_doctor_without_a_daemon_says_where_it_looked(tmp_path):
    result = invoke("doctor", "--artifacts", str(tmp_path), env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"},
                    check=False)
    assert result.returncode == 1
    assert "[FAIL] container engine: No Docker daemon answers at DOCKER_HOST=unix:///nonexistent/docker.sock" in result.stdout
    assert "[FAIL] base images: not checked" in result.stdout


# -- 4. read-only artifacts, full disk ----------------------------------------------


def test_read_only_artifacts_fail_clearly_before_any_work_and_change_nothing(good_copy, tmp_path):
    with tmpfs(tmp_path / "ro", "16m") as disk:
        artifacts = disk / "artifacts"
        shutil.copytree(str(good_copy), str(artifacts), symlinks=True)
        (ArtifactLayout(artifacts, TARGET).stamps_dir / "convert.json").unlink()  # there is work to do
        before = tree_digests(artifacts)
        remount_read_only(disk)
        result = invoke(*build_args(artifacts), check=False)
        assert_clean_error(result, f"Cannot write {artifacts}/.locks/{TARGET}.lock: Read-only file system. Remount that "
                                   "filesystem read-write or pass --artifacts DIR on a writable one.")
        assert "docker run" not in result.stdout
        assert tree_digests(artifacts) == before


def test_full_disk_during_convert_fails_clearly_and_keeps_the_previous_ir(good_copy, tmp_path):
    with tmpfs(tmp_path / "disk", "16m") as disk:
        artifacts = disk / "artifacts"
        shutil.copytree(str(good_copy), str(artifacts), symlinks=True)
        good = outputs(artifacts)
        (ArtifactLayout(artifacts, TARGET).stamps_dir / "convert.json").unlink()  # convert must run again
        fill(disk)
        result = invoke(*build_args(artifacts), check=False)
        assert_clean_error(result, f"[{TARGET}] convert: running (never built)",
                           "Step 'convert' failed with exit code 2.", "No space left on device. Free space on that "
                           "filesystem", "it resumes where it stopped")
        assert "Traceback" not in result.stdout  # neither the host's nor the container's
        assert outputs(artifacts) == good and temporaries(artifacts) == []


# -- 5. corrupted outputs and caches -------------------------------------------------


def test_flipped_byte_in_the_ir_is_detected_and_rebuilt(good_copy):
    layout = ArtifactLayout(good_copy, TARGET)
    good = outputs(good_copy)
    data = bytearray(layout.ir_bin.read_bytes())
    data[len(data) // 2] ^= 0x01
    layout.ir_bin.write_bytes(bytes(data))
    for cached in (good_copy / ".cache" / "packages").glob("*.json"):
        cached.write_text(cached.read_text().replace("numpy==", "numpx=="))  # a damaged cache entry
    result = invoke(*build_args(good_copy))
    assert (f"[{TARGET}] convert: running (outputs differ from what the last run wrote (modified or corrupted))"
            in result.stdout)
    assert re.search(r"ran: convert [\d.]+ s;", result.stdout)  # the rebuilt IR is the recorded one: check skips
    assert outputs(good_copy) == good
    assert "is damaged; listing the image's packages again" in result.stdout
    assert "numpx" not in (layout.target_dir / "manifest.json").read_text()


# -- 7. a failing container step ----------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_failing_stage_is_one_container_error_with_its_log_tail(tmp_path, debug):
    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text()
                       + '\n[targets."junk-small"]\nextends = "synthetic-small"\ncheckpoint = "release"\n')
    artifacts = tmp_path / "artifacts"
    checkpoint = ArtifactLayout(artifacts, "junk-small").checkpoint_dir
    checkpoint.mkdir(parents=True)
    (checkpoint / "checkpoint").write_text("not a checkpoint\n")
    result = invoke("build", "--target", "junk-small", "--artifacts", str(artifacts), *(["--debug"] if debug else []),
                    env={TARGETS_ENV: str(targets)}, check=False)
    assert result.returncode == 2
    text = result.stdout
    assert "ds2ir: error: Step 'freeze' failed with exit code 2." in text
    assert re.search(r"\n  image: ds2ir/freeze-tf1\.15\.5:[0-9a-f]{12}\n", text)
    assert re.search(r"\n  command: docker run --rm --platform linux/amd64 --name ds2ir-freeze-\S+ .* freeze --target junk-small\n", text)
    assert "\n  last lines of its output:\n    ds2ir: error: " in text  # the container's own message
    assert ("Traceback" in text and "ds2ir.errors.ContainerError" in text) == debug
    assert not ArtifactLayout(artifacts, "junk-small").frozen_dir.exists()


# -- 8. a stage past its time limit ---------------------------------------------------------


def test_stage_past_its_time_limit_is_stopped_and_leaves_nothing_half_written(tmp_path):
    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text()
                       + '\n[targets."slow-small"]\nextends = "synthetic-small"\nstage_time_limit = 1\n')
    artifacts = tmp_path / "artifacts"
    result = invoke("build", "--target", "slow-small", "--artifacts", str(artifacts),
                    env={TARGETS_ENV: str(targets)}, check=False)
    assert_clean_error(result, "[slow-small] checkpoint: running (never built)",
                       "ds2ir: error: Step 'make-checkpoint' did not finish within 1 s and was stopped. Its container "
                       "was stopped and removed", f"raise stage_time_limit ({targets}: [targets.\"slow-small\"])")
    assert containers(artifacts) == []
    layout = ArtifactLayout(artifacts, "slow-small")
    assert not layout.checkpoint_dir.exists() and not (layout.stamps_dir / "checkpoint.json").exists()
    assert list(layout.target_dir.rglob(f"*{atomic.TEMP_MARK}*")) == []
