"""Docker calls that never return: every call but a stage's own run has a time limit (no Docker needed)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Iterator, List

import pytest

from ds2ir.errors import ConfigError, DockerUnavailableError
from ds2ir.host.docker import TIMEOUT_ENV, Docker
from ds2ir.model.targets import DEFAULT_STAGE_TIME_LIMIT
from ds2ir.model.targets_file import TargetsFile, load_target
from ds2ir.runner import Runner
from tests._support.checkout import targets_file
from tests.e2e.helpers import PROJECT


@pytest.fixture
def silent_daemon() -> Iterator[str]:
    """A unix socket that accepts connections and never answers: DOCKER_HOST for a hung daemon."""
    directory = tempfile.mkdtemp(prefix="ds2ir-", dir="/tmp")  # short: socket paths are limited to 108 bytes
    path = os.path.join(directory, "x.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(16)
    accepted: List[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"unix://{path}"
    finally:
        stop.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def sleeping_docker(tmp_path: Path) -> str:
    """A `docker` executable that never finishes."""
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    return str(fake)


def test_preflight_against_a_daemon_that_never_answers_fails_with_the_engine_named(
    silent_daemon: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("docker") is None:
        pytest.skip("needs the docker client (not the daemon)")
    monkeypatch.setenv("DOCKER_HOST", silent_daemon)
    with pytest.raises(DockerUnavailableError) as raised:
        Docker(Runner(), timeout=1.5).preflight()
    message = str(raised.value)
    assert f"daemon at {silent_daemon}" in message and "within 1.5 s, so it was stopped" in message
    assert "docker version" in message and "accepts connections but never answers" in message


def test_every_quick_docker_call_has_a_time_limit(sleeping_docker: str) -> None:
    docker = Docker(Runner(), executable=sleeping_docker, timeout=0.5)
    for call in (docker.preflight, docker.client_version, lambda: docker.image_id("some/image:tag"),
                 lambda: docker.image_size("some/image:tag"), lambda: docker.remove_stray_containers(Path("/tmp"))):
        with pytest.raises(DockerUnavailableError, match="within 0.5 s, so it was stopped"):
            call()
    assert not docker.runner.succeeds([sleeping_docker, "compose", "version"], timeout=0.5)


def test_invoke_build_against_a_hung_daemon_ends_with_one_paragraph(silent_daemon: str, tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        pytest.skip("needs the docker client (not the daemon)")
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(PROJECT), "build", "--target", "synthetic-small",
         "--artifacts", str(tmp_path / "artifacts")],
        cwd=str(PROJECT), env=dict(os.environ, DOCKER_HOST=silent_daemon, **{TIMEOUT_ENV: "2"}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stdout
    assert f"ds2ir: error: The Docker engine (client 'docker', daemon at {silent_daemon}) did not finish" in result.stdout
    assert not (tmp_path / "artifacts").exists()  # failed before any work


@pytest.mark.parametrize("value", ["0", "-5", "604801", '"60"', "1.5"])
def test_a_stage_time_limit_out_of_range_is_refused_at_load(tmp_path: Path, value: str) -> None:
    path = tmp_path / "targets.toml"
    path.write_text((PROJECT / "targets.toml").read_text()
                    + f'\n[targets.bad]\nextends = "synthetic-small"\nstage_time_limit = {value}\n')
    with pytest.raises(ConfigError, match=r"\[targets\.bad\.stage_time_limit\]: .*(from 1 to 604800|must be int)"):
        TargetsFile.load(path).target("bad")


def test_the_stage_time_limit_defaults_and_changes_no_build_output(tmp_path: Path) -> None:
    path = tmp_path / "targets.toml"
    path.write_text((PROJECT / "targets.toml").read_text()
                    + '\n[targets.quick]\nextends = "synthetic-small"\nstage_time_limit = 30\n')
    quick = TargetsFile.load(path).target("quick")
    assert load_target(targets_file(), "synthetic-small").stage_time_limit == DEFAULT_STAGE_TIME_LIMIT == 7200
    assert quick.stage_time_limit == 30
    small = load_target(targets_file(), "synthetic-small").fingerprint()
    assert {**quick.fingerprint(), "name": small["name"], "description": small["description"]} == small


def test_a_malformed_docker_timeout_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("soon", "0", "-1", "inf", "nan"):
        monkeypatch.setenv(TIMEOUT_ENV, value)
        with pytest.raises(ConfigError, match=f"{TIMEOUT_ENV} must be a positive number of seconds"):
            Docker(Runner())
