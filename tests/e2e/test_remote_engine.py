"""A remote engine: a second dockerd that cannot see this checkout nor the test's files, the way an engine
on another machine (DOCKER_HOST=ssh://...) cannot. Stages then work on a named volume, inputs copied in and
outputs out; the outputs must be the locked ones, and verify, transcribe and clean must work.

The daemon runs in its own mount and network namespaces (``unshare -m -n``): the checkout and pytest's
base temporary directory are hidden under tmpfs mounts, and its own network namespace keeps it from
touching the main engine's bridge (a second daemon in the host's namespace deletes docker0). It has its
own data root, exec root, pidfile and socket; the stage images come in through ``docker save | load``
under the same content tags, so ds2ir must find them and build nothing. The test starts and stops it by PID.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from ds2ir.host.docker import Docker
from ds2ir.host.images import ensure_stage_image
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file
from tests.e2e.helpers import PROJECT, invoke

TARGET = "synthetic-small"


def _missing() -> str:
    if os.geteuid() != 0:
        return "a second dockerd needs root"
    missing = [tool for tool in ("unshare", "dockerd", "ip") if shutil.which(tool) is None]
    return f"{', '.join(missing)} not installed" if missing else ""


pytestmark = pytest.mark.skipif(bool(_missing()), reason=f"no second Docker engine here: {_missing()}")


def _images(docker: Docker) -> List[str]:
    """The target's stage and app images under their content tags (built here if need be), and the base
    images those tags name."""
    target = load_target(targets_file(), TARGET)
    tags: List[str] = []
    for spec in (target.freeze_image, target.convert_image, target.application_image):
        tags += [ensure_stage_image(docker, spec, PROJECT), docker.resolve_base_image(spec.base_image)]
    return list(dict.fromkeys(tags))


@pytest.fixture(scope="module")
def remote(docker: Docker, tmp_path_factory) -> Iterator[Dict[str, str]]:
    """DOCKER_HOST of a second engine holding the target's images, started and stopped by this fixture."""
    state = Path(tempfile.mkdtemp(prefix="ds2ir-engine-", dir="/var/tmp"))
    socket = state / "docker.sock"
    (state / "daemon.json").write_text("{}")
    hidden = [PROJECT, tmp_path_factory.getbasetemp()]
    script = " && ".join([*(f"mount -t tmpfs tmpfs '{path}'" for path in hidden), "ip link set lo up",
                          f"exec dockerd --config-file '{state}/daemon.json' --data-root '{state}/data' "
                          f"--exec-root '{state}/exec' --pidfile '{state}/docker.pid' -H 'unix://{socket}' "
                          f"--bridge none --iptables=false --ip-masq=false --cgroup-parent ds2ir-test-engine"])
    with open(state / "dockerd.log", "w") as log:
        daemon = subprocess.Popen(["unshare", "-m", "-n", "--propagation", "private", "sh", "-c", script],
                                  stdout=log, stderr=subprocess.STDOUT)
    env = {"DOCKER_HOST": f"unix://{socket}"}
    try:
        for _ in range(120):
            if subprocess.run(["docker", "version"], env=dict(os.environ, **env), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0:
                break
            assert daemon.poll() is None, (state / "dockerd.log").read_text()[-3000:]
            time.sleep(0.5)
        saver = subprocess.Popen(["docker", "save", *_images(docker)], stdout=subprocess.PIPE)
        loaded = subprocess.run(["docker", "load", "-q"], stdin=saver.stdout, env=dict(os.environ, **env),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        saver.stdout.close()  # type: ignore[union-attr]  # Popen with stdout=PIPE has one
        assert saver.wait() == 0 and loaded.returncode == 0, loaded.stdout
        yield env
    finally:
        daemon.send_signal(signal.SIGTERM)  # unshare exec'd into sh, which exec'd into dockerd: this is its PID
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        shutil.rmtree(state, ignore_errors=True)


def test_a_build_on_an_engine_that_cannot_see_the_checkout_goes_through_a_volume(remote, tmp_path):
    artifacts = tmp_path / "artifacts"
    result = invoke("build", "--target", TARGET, "--check", "--artifacts", str(artifacts), env=remote)
    assert "does not see" in result.stdout and "stages work on volume ds2ir-artifacts-" in result.stdout
    assert f"[{TARGET}] outputs are bit-identical to outputs.lock.json" in result.stdout
    assert "docker build" not in result.stdout  # the loaded images carry the same content tags: nothing built
    manifest = json.loads((ArtifactLayout(artifacts, TARGET).target_dir / "manifest.json").read_text())
    assert manifest["container_engine"]["engine"].endswith(f"daemon at {remote['DOCKER_HOST']}")
    assert manifest["container_engine"]["artifacts"].startswith("volume ds2ir-artifacts-")
    again = invoke("build", "--target", TARGET, "--artifacts", str(artifacts), env=remote)
    assert f"[{TARGET}] ran: nothing (all up to date)" in again.stdout

    verified = invoke("verify", "--target", TARGET, "--artifacts", str(artifacts), "--audio", str(PROJECT / "data" / "LDC93S1.wav"),
                      env=remote)
    report = json.loads((ArtifactLayout(artifacts, TARGET).verify_dir / "report.json").read_text())
    assert "verified 1 recording(s)" in verified.stdout and report
    printed = invoke("transcribe", "--target", TARGET, "--artifacts", str(artifacts),
                     "--audio", str(PROJECT / "data" / "LDC93S1.wav"), env=remote).stdout
    assert '"real_time_factor"' in printed
    cleaned = invoke("clean", "--target", TARGET, "--artifacts", str(artifacts), env=remote)
    assert f"removed {artifacts / TARGET}" in cleaned.stdout and not (artifacts / TARGET).exists()

