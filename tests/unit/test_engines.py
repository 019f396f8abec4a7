"""Choosing Docker or Podman, and the command lines where they differ (no engine needed)."""
from __future__ import annotations

import resource
from pathlib import Path

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host import engines
from ds2ir.host.docker import Docker
from ds2ir.runner import Runner
from tests._support.stages import run_stage

ONLY_PODMAN = {"podman": "/usr/bin/podman"}.get
BOTH = {"docker": "/usr/bin/docker", "podman": "/usr/bin/podman"}.get


def test_ds2ir_engine_chooses_and_docker_is_the_default_unless_only_podman_is_installed() -> None:
    assert engines.choose_executable({}, BOTH) == "docker"
    assert engines.choose_executable({}, ONLY_PODMAN) == "podman"
    assert engines.choose_executable({}, {}.get) == "docker"  # the preflight then says how to install it
    assert engines.choose_executable({"DS2IR_ENGINE": "podman"}, BOTH) == "podman"
    assert engines.choose_executable({"DS2IR_ENGINE": "/opt/bin/podman"}, BOTH) == "/opt/bin/podman"


@pytest.mark.parametrize("value", ["nerdctl", "rm -rf /", "podman2"])
def test_an_unknown_engine_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="DS2IR_ENGINE=.* is not a container engine ds2ir drives"):
        engines.choose_executable({"DS2IR_ENGINE": value}, BOTH)


def test_podman_stage_runs_pin_open_files_and_processes_to_this_processs_limits(tmp_path: Path) -> None:
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    argv = _run_command("podman", tmp_path)
    limits = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--ulimit"]
    assert limits[0] == f"nofile={min(files, 1 << 20)}:{min(files, 1 << 20)}"
    nproc = int(limits[1].split("=")[1].split(":")[0])
    assert 0 < nproc <= int(Path("/proc/sys/kernel/pid_max").read_text())
    assert "--ulimit" not in _run_command("docker", tmp_path)  # Docker's containers inherit the daemon's


def test_engine_specific_queries() -> None:
    assert engines.platform_query("podman")[1:3] == ["info", "--format"]
    assert engines.platform_query("docker")[1:3] == ["version", "--format"]
    assert engines.label_format("podman", "k") == '{{index .Labels "k"}}'
    assert engines.label_format("docker", "k") == '{{.Label "k"}}'


def _run_command(executable: str, tmp_path: Path) -> list:
    lines: list = []
    docker = Docker(Runner(dry_run=True, say=lines.append), executable=executable)
    run_stage(docker, step="s", image="i", args=[], artifacts=tmp_path / "a", targets=tmp_path / "t")
    return lines[0][2:].split()
