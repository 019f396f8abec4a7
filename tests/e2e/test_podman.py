"""Every task with Podman instead of Docker (DS2IR_ENGINE=podman): the same images, outputs and promises."""
from __future__ import annotations

import shutil

import pytest

from ds2ir.host.docker import Docker
from ds2ir.host.images import ensure_stage_image
from ds2ir.model.targets_file import load_target
from ds2ir.runner import Runner
from tests._support.checkout import targets_file
from tests._support.engines import copy_image
from tests.e2e.helpers import PROJECT, invoke

PODMAN = {"DS2IR_ENGINE": "podman"}


@pytest.fixture(scope="module")
def podman(docker: Docker) -> Docker:
    """Podman holding synthetic-small's stage images, loaded from Docker under the same content tags."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed ('scripts/bootstrap' installs it): these tests must run in CI")
    engine = Docker(Runner(echo_output=False), executable="podman")
    engine.preflight()
    target = load_target(targets_file(), "synthetic-small")
    for spec in (target.freeze_image, target.convert_image):
        copy_image(docker, engine, ensure_stage_image(docker, spec, PROJECT))
    return engine


def test_podman_builds_synthetic_small_bit_identical_to_the_lock_with_the_images_it_was_given(podman, tmp_path):
    result = invoke("build", "--target", "synthetic-small", "--check", "--artifacts", str(tmp_path), env=PODMAN)
    assert "[synthetic-small] outputs are bit-identical to outputs.lock.json" in result.stdout
    assert "$ podman run --rm --platform linux/amd64 --ulimit nofile=" in result.stdout
    assert "$ docker " not in result.stdout
    assert "up to date" in result.stdout and "podman build" not in result.stdout  # same content tags: nothing built
    leftovers = podman.call(["podman", "ps", "-a", "-q", "--filter", f"label=ds2ir.artifacts={tmp_path}"],
                            step="ps", capture=True, quiet=True)
    assert leftovers.strip() == ""


def test_doctor_names_podman_as_the_engine(podman, tmp_path):
    result = invoke("doctor", "--artifacts", str(tmp_path), env=PODMAN, check=False)
    assert "[  ok] container engine: Podman, client 'podman', service local: version " in result.stdout
    assert "[  ok] engine platform: linux/amd64: every image runs natively" in result.stdout
