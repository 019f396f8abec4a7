"""Docker command lines and compose files built on the host (no engine needed)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host.compose import render_env_file
from ds2ir.host.engines import bind_mount
from ds2ir.host.images import available_base_image, build_stage_image, stage_image_tag
from ds2ir.model.layout import TARGETS_ENV
from ds2ir.model.targets_file import TargetsFile, load_target
from tests._support.checkout import targets_file
from tests._support.stages import run_stage


def test_bind_mounts_quote_commas_colons_and_quotes_as_one_field() -> None:
    assert bind_mount(Path("/a:b,c\"d"), "/artifacts") == 'type=bind,"source=/a:b,c""d",target=/artifacts'
    assert bind_mount(Path("/plain"), "/x", read_only=True) == "type=bind,source=/plain,target=/x,readonly"
    with pytest.raises(ConfigError, match="control character"):
        bind_mount(Path("/a\nb"), "/x")


def test_env_file_refuses_a_value_with_a_newline() -> None:
    target = load_target(targets_file(), "synthetic-small")
    assert "DS2IR_TARGET=synthetic-small\n" in render_env_file(target)
    bad = dataclasses.replace(target, freeze_image=dataclasses.replace(target.freeze_image, base_image="x\nINJECTED=1"))
    with pytest.raises(ConfigError, match="FREEZE_BASE_IMAGE .* control character"):
        render_env_file(bad)


def test_compose_env_refuses_a_base_image_with_a_newline_and_keeps_env(tmp_path: Path) -> None:
    from tests.e2e.helpers import PROJECT, invoke

    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text().replace(
        'base_image = "python:3.7-slim"', 'base_image = "python:3.7-slim\\nINJECTED=1"', 1))
    env_file = PROJECT / ".env"
    before = env_file.read_bytes() if env_file.exists() else None
    result = invoke("compose-env", env={TARGETS_ENV: str(targets)}, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    assert "contains a newline or another control character" in result.stdout
    assert (env_file.read_bytes() if env_file.exists() else None) == before


# -- platform: every image built, pulled and run for the platform targets.toml gives it --------------------------

class RecordingRunner:
    """Keeps each command line; answers `version` with the engine platform given."""

    dry_run = False

    def __init__(self, engine_platform: str = "linux/amd64") -> None:
        self.engine_platform = engine_platform
        self.commands: list = []

    def say(self, message: str) -> None:
        pass

    def run(self, argv, **options):  # type: ignore[no-untyped-def]
        self.commands.append([str(a) for a in argv])
        return self.engine_platform + "\n" if "version" in argv else ""

    def succeeds(self, argv, **options) -> bool:  # type: ignore[no-untyped-def]
        self.commands.append([str(a) for a in argv])
        return True


def _targets_with(tmp_path: Path, platform_line: str) -> Path:
    from tests.e2e.helpers import PROJECT

    text = (PROJECT / "targets.toml").read_text().replace(
        '[images."convert-ov2022.3"]\n', f'[images."convert-ov2022.3"]\n{platform_line}\n', 1)
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


def test_images_default_to_linux_amd64_and_take_the_platform_key(tmp_path: Path) -> None:
    from tests.e2e.helpers import PROJECT

    assert {spec.platform for spec in TargetsFile.load(targets_file(), project=PROJECT).images.values()} == {"linux/amd64"}
    targets = TargetsFile.load(_targets_with(tmp_path, 'platform = "linux/arm64"'), project=PROJECT)
    assert targets.images["convert-ov2022.3"].platform == "linux/arm64"


@pytest.mark.parametrize("value", ['"amd64"', '"linux/amd64\\nX=1"', '"windows/amd64"', "64"])
def test_a_bad_platform_is_refused_naming_the_key(tmp_path: Path, value: str) -> None:
    from tests.e2e.helpers import PROJECT

    with pytest.raises(ConfigError, match=r"images\.convert-ov2022\.3\.platform"):
        TargetsFile.load(_targets_with(tmp_path, f"platform = {value}"), project=PROJECT)


def test_build_pull_and_run_pass_the_images_platform_and_the_tag_depends_on_it(tmp_path: Path) -> None:
    from ds2ir.host.docker import Docker
    from tests.e2e.helpers import PROJECT

    runner = RecordingRunner()
    docker = Docker(runner)  # type: ignore[arg-type]
    spec = load_target(targets_file(), "synthetic-small").convert_image
    arm = dataclasses.replace(spec, platform="linux/arm64")
    assert stage_image_tag(docker, spec, "python:3.11-slim", PROJECT) != stage_image_tag(docker, arm, "python:3.11-slim", PROJECT)
    build_stage_image(docker, arm, PROJECT, "ds2ir/x:tag", base_image="python:3.11-slim")
    build = next(c for c in runner.commands if c[1] == "build")
    assert build[build.index("--platform") + 1] == "linux/arm64"
    available_base_image(docker, arm)
    pull = next(c for c in runner.commands if c[1] == "pull")
    assert pull[pull.index("--platform") + 1] == "linux/arm64"
    run_stage(docker, step="s", image="ds2ir/x:tag", args=[], artifacts=tmp_path / "a", targets=tmp_path / "t", platform="linux/arm64")
    run = next(c for c in runner.commands if c[1] == "run")
    assert run[run.index("--platform") + 1] == "linux/arm64"


def test_doctor_names_the_images_an_arm64_engine_would_emulate() -> None:
    from ds2ir.host import doctor
    from ds2ir.host.docker import Docker
    from tests.e2e.helpers import PROJECT

    targets = TargetsFile.load(targets_file(), project=PROJECT)
    native = doctor._platforms(Docker(RecordingRunner("linux/amd64")), targets)  # type: ignore[arg-type]
    assert native.ok and native.detail == "linux/amd64: every image runs natively"
    emulated = doctor._platforms(Docker(RecordingRunner("linux/arm64")), targets)  # type: ignore[arg-type]
    assert not emulated.ok and not emulated.blocks  # a warning: emulation works where QEMU is installed
    assert "runs linux/arm64" in emulated.detail and "linux/amd64: app-ov2024.6, app-ov2025.3, convert-ov2022.3" in emulated.detail


@pytest.mark.parametrize("environ, says", [
    ({}, "bind mounts of {a}: the engine is the local default"),
    ({"DS2IR_ARTIFACTS_STORAGE": "volume"}, "named volume ds2ir-artifacts-"),
    ({"DS2IR_ARTIFACTS_STORAGE": "bind"}, "bind mounts of {a}: DS2IR_ARTIFACTS_STORAGE=bind"),
    ({"DOCKER_HOST": "ssh://builder"}, "decided at the first stage: the engine (client 'docker', daemon at ssh://builder)"),
], ids=["local", "forced-volume", "forced-bind", "remote"])
def test_doctor_says_where_stage_containers_find_the_artifacts(tmp_path: Path, monkeypatch, environ, says) -> None:
    from ds2ir.host import storage
    from ds2ir.host.docker import Docker
    from ds2ir.runner import Runner

    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "CONTAINER_HOST", "DS2IR_ARTIFACTS_STORAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert says.format(a=tmp_path / "artifacts") in storage.describe(Docker(Runner(dry_run=True)), tmp_path / "artifacts")


def test_doctor_refuses_an_artifacts_storage_that_is_neither_bind_nor_volume(tmp_path: Path, monkeypatch) -> None:
    from ds2ir.errors import ConfigError
    from ds2ir.host import storage
    from ds2ir.host.docker import Docker
    from ds2ir.runner import Runner

    monkeypatch.setenv("DS2IR_ARTIFACTS_STORAGE", "nfs")
    with pytest.raises(ConfigError, match="DS2IR_ARTIFACTS_STORAGE='nfs' is not a way to reach the artifacts"):
        storage.describe(Docker(Runner(dry_run=True)), tmp_path / "artifacts")
