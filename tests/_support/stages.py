"""Tests start a single stage container the way the host code does: through a StageLauncher."""
from __future__ import annotations

from pathlib import Path

from ds2ir.host.docker import Docker
from ds2ir.host.launch import StageLauncher
from ds2ir.model.targets import DEFAULT_PLATFORM


def run_stage(docker: Docker, *, artifacts: Path, targets: Path, platform: str = DEFAULT_PLATFORM, **options: object) -> str:
    """``StageLauncher(docker, artifacts, targets).run(...)`` in one call."""
    return StageLauncher(docker, artifacts=artifacts, targets=targets).run(platform=platform, **options)  # type: ignore[arg-type]
