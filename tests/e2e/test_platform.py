"""The platform reaches the engine: images are built for linux/amd64, and a stage run for another platform fails."""
from __future__ import annotations

from pathlib import Path

import pytest

from ds2ir.errors import ContainerError
from ds2ir.host.docker import Docker
from tests._support.stages import run_stage


def test_a_stage_run_for_a_platform_the_engine_cannot_run_fails_instead_of_running_natively(docker: Docker, tmp_path: Path) -> None:
    image = docker.resolve_base_image("python:3.11-slim")
    targets = tmp_path / "targets.toml"
    targets.write_text("")
    args = dict(step="platform probe", image=image, entrypoint="python", artifacts=tmp_path / "a", targets=targets,
                capture=True, args=["-c", "import platform; print(platform.machine())"])
    assert run_stage(docker, **args, platform="linux/amd64").strip() == "x86_64"  # type: ignore[arg-type]
    if docker.server_platform() != "linux/amd64":
        pytest.skip("this engine is not linux/amd64")
    with pytest.raises(ContainerError):  # no arm64 image, no emulation here: the engine refuses, nothing runs as x86
        run_stage(docker, **args, platform="linux/arm64")  # type: ignore[arg-type]
