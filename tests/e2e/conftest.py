"""End-to-end fixtures: real Docker engine, real images, real builds in temp directories."""
from __future__ import annotations

from typing import Dict

import pytest

from ds2ir.docker import Docker
from ds2ir.runner import Runner
from tests.e2e.helpers import invoke


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
    """`invoke build --target ldc93s1-smoke` (trained on LDC93S1 here), shared by the modules that use it."""
    artifacts = tmp_path_factory.mktemp("smoke")
    invoke("build", "--target", "ldc93s1-smoke", "--artifacts", str(artifacts))
    return artifacts
