"""End-to-end fixtures: real Docker engine, real images, real builds in temp directories."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict

import pytest

from ds2ir.host.docker import Docker
from ds2ir.runner import Runner
from tests.e2e.helpers import PROJECT, invoke
from tests.e2e.workspace import GIVEN_SMALL, Workspace, write_checkpoint


@pytest.fixture(scope="session")
def docker() -> Docker:
    engine = Docker.from_environment(Runner(echo_output=False))
    engine.preflight()  # no engine is a failure here, not a skip: CI must run these
    return engine


@pytest.fixture(scope="session")
def full_build(tmp_path_factory) -> Dict[str, object]:
    """`invoke build --target synthetic-0.8.2` from an empty artifacts directory."""
    artifacts = tmp_path_factory.mktemp("artifacts")
    result = invoke("build", "--target", "synthetic-0.8.2", "--artifacts", str(artifacts))
    return {"artifacts": artifacts, "output": result.stdout}


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory):
    """`invoke build --check --target ldc93s1-smoke` (the shipped checkpoint; outputs as outputs.lock.json records
    them, or the build fails), shared by the modules that use it."""
    artifacts = tmp_path_factory.mktemp("smoke")
    invoke("build", "--check", "--target", "ldc93s1-smoke", "--artifacts", str(artifacts))
    return artifacts


@pytest.fixture(scope="session")
def given_small(docker, tmp_path_factory) -> Dict[str, object]:
    """`given-small` (tests/e2e/workspace.py) built once from its given checkpoint: every stage ran."""
    root = tmp_path_factory.mktemp("given-small")
    space = Workspace(root, root / "artifacts", (PROJECT / "targets.toml").read_text() + GIVEN_SMALL)
    write_checkpoint(docker, space.targets, space.artifacts)
    return {"root": root, "output": space.build().stdout}


@pytest.fixture
def space(given_small, tmp_path) -> Workspace:
    """A private copy of given-small's built artifacts and targets file (mtimes kept), to change."""
    root: Path = given_small["root"]  # type: ignore[assignment]
    shutil.copytree(str(root / "artifacts"), str(tmp_path / "artifacts"), symlinks=True)
    return Workspace(tmp_path, tmp_path / "artifacts", (root / "targets.toml").read_text())
