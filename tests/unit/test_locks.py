"""The hashed locks: complete, hashed, faithful to their inputs, wired into images and compose."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host import locks
from ds2ir.host.compose import compose_environment
from ds2ir.host.docker import Docker
from ds2ir.host.images import stage_image_tag
from ds2ir.model.targets_file import TargetsFile, load_target, tomllib
from ds2ir.runner import Runner
from tests._support.checkout import CHECKOUT, targets_file

PROJECT = CHECKOUT
TARGETS = TargetsFile.load(PROJECT / "targets.toml")
IMAGES = sorted(TARGETS.images.values(), key=lambda image: image.name)
LOCK_FILES = sorted({image.lock for image in IMAGES} | {locks.HOST_LOCK})
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(?:(==|>=)\s*([^\s;\\]+))?")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement(line: str) -> Tuple[str, Optional[str], Optional[str]]:
    """(normalized name, operator, version) of one requirement line."""
    match = REQUIREMENT.match(line)
    assert match, f"not a requirement: {line!r}"
    return _name(match.group(1)), match.group(2), match.group(3)


def _entries(path: Path) -> List[str]:
    """The requirement entries of a requirements file, continuation lines joined; ``-c FILE`` adds FILE's."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [entry for line in lines
            for entry in (_entries(path.parent / line[2:].strip()) if line.startswith("-c ") else [line])]


def _pins(lock: str) -> Dict[str, str]:
    pins = {}
    for entry in _entries(PROJECT / lock):
        name, operator, version = _requirement(entry)
        assert operator == "==" and version, f"{lock}: not pinned: {entry}"
        pins[name] = version
    return pins


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def test_every_image_has_its_lock_and_pins():
    for image in IMAGES:
        assert (PROJECT / image.lock).is_file(), f"{image.name}: {image.lock} is missing; run 'invoke lock'"
        assert (PROJECT / image.lock_input).is_file(), f"{image.name}: {image.lock_input} is missing"


@pytest.mark.parametrize("lock", LOCK_FILES)
def test_every_lock_entry_is_pinned_with_sha256_hashes(lock):
    entries = _entries(PROJECT / lock)
    assert entries
    for entry in entries:
        assert "--hash=sha256:" in entry, f"{lock}: no hash for {entry}"
    _pins(lock)


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.name)
def test_image_lock_pins_what_its_input_pins(image):
    pins = _pins(image.lock)
    for entry in _entries(PROJECT / image.lock_input):
        name, operator, version = _requirement(entry)
        assert name in pins, f"{image.lock} lacks {name} from {image.lock_input}; run 'invoke lock'"
        if operator == "==":
            assert pins[name] == version, f"{image.lock} pins {name}=={pins[name]}, {image.lock_input} says {version}"


def test_host_lock_covers_the_host_and_test_extras():
    extras = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    pins = _pins(locks.HOST_LOCK)
    for extra in locks.HOST_EXTRAS:
        for requirement in extras[extra]:
            assert _requirement(requirement)[0] in pins, f"{locks.HOST_LOCK} lacks {requirement}; run 'invoke lock'"


@pytest.mark.parametrize("image", IMAGES, ids=lambda image: image.name)
def test_image_lock_holds_the_build_backend(image):
    """The Dockerfiles install ds2ir with --no-build-isolation: its build requirements come from the lock."""
    pins = _pins(image.lock)
    for requirement in tomllib.loads((PROJECT / "pyproject.toml").read_text())["build-system"]["requires"]:
        name, operator, version = _requirement(requirement)
        assert name in pins, f"{image.lock} lacks the build requirement {requirement}"
        if operator == ">=":
            assert _version(pins[name]) >= _version(version), f"{image.lock}: {name}=={pins[name]} < {version}"


def test_dockerfile_defaults_are_the_default_targets_build_args():
    target = load_target(targets_file())
    for spec in (target.freeze_image, target.convert_image):
        text = (PROJECT / spec.dockerfile).read_text()
        defaults = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))
        assert defaults == spec.build_args(), spec.dockerfile


def test_compose_environment_passes_the_locks():
    target = load_target(targets_file(), "synthetic-small")
    env = compose_environment(target, {target.freeze_image.base_image: "local/python:3.7"})
    assert env["FREEZE_LOCK_FILE"] == target.freeze_image.lock
    assert env["CONVERT_LOCK_FILE"] == target.convert_image.lock
    assert env["FREEZE_BASE_IMAGE"] == "local/python:3.7"
    assert not any("REQUIREMENTS" in key for key in env)


def test_missing_lock_file_names_file_and_key(tmp_path):
    text = (PROJECT / "targets.toml").read_text().replace('"locks/convert-ov2024.6.txt"', '"locks/convert-missing.txt"')
    path = tmp_path / "targets.toml"
    path.write_text(text)
    TargetsFile.load(path)  # without a checkout to look in (stage containers), the path is enough
    with pytest.raises(ConfigError) as excinfo:
        TargetsFile.load(path, project=PROJECT)
    assert excinfo.value.file == str(path) and excinfo.value.key == "images.convert-ov2024.6.lock"
    assert "convert-missing.txt" in str(excinfo.value) and "invoke lock" in str(excinfo.value)


def test_checkout_locks_exist():
    TargetsFile.load(PROJECT / "targets.toml", project=PROJECT)


def test_image_tag_changes_with_the_lock(tmp_path):
    image = TARGETS.images["freeze-tf1.15.5"]
    for name in ("pyproject.toml", image.dockerfile, image.lock):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT / name, tmp_path / name)
    (tmp_path / "src").mkdir()
    docker = Docker(Runner(dry_run=True))
    before = stage_image_tag(docker, image, image.base_image, tmp_path)
    with (tmp_path / image.lock).open("a") as lock:
        lock.write("# changed\n")
    assert stage_image_tag(docker, image, image.base_image, tmp_path) != before


def test_lock_commands_compile_every_lock_for_its_python():
    commands = {lock.output: lock.command() for lock in locks.locks(TARGETS)}
    assert set(commands) == set(LOCK_FILES)
    for image in IMAGES:
        argv = commands[image.lock]
        assert argv[argv.index("--python-version") + 1] == image.python
        assert "--generate-hashes" in argv and argv[-2:] == ["pyproject.toml", image.lock_input]
    host = commands[locks.HOST_LOCK]
    assert host[host.index("--python-version") + 1] == locks.HOST_PYTHON
    assert "--upgrade" in locks.locks(TARGETS)[0].command(upgrade=True)


def test_compile_locks_runs_uv_for_each_lock():
    said: List[str] = []
    written = locks.compile_locks(Runner(dry_run=True, say=said.append), PROJECT, TARGETS)
    assert written == [lock.output for lock in locks.locks(TARGETS)]
    assert len(said) == len(written) and all(" -m uv pip compile " in line for line in said)


def test_two_images_sharing_a_lock_must_agree(tmp_path):
    text = (PROJECT / "targets.toml").read_text().replace('"locks/convert-ov2024.6.txt"', '"locks/freeze-tf1.15.5.txt"')
    path = tmp_path / "targets.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"images\.convert-ov2024\.6\.lock"):
        locks.locks(TargetsFile.load(path))


def test_the_next_openvino_release_is_an_image_entry_a_pins_file_and_invoke_lock(tmp_path):
    """docs/targets.md, "Adding the next OpenVINO release": the entry and the .in file are all `invoke lock` needs."""
    project = tmp_path / "checkout"
    shutil.copytree(PROJECT / "locks", project / "locks")
    shutil.copy(PROJECT / "pyproject.toml", project / "pyproject.toml")
    (project / "locks" / "convert-ov2027.0.in").write_text("openvino==2027.0.0\nmatplotlib==3.9.2\nsetuptools\n")
    (project / "targets.toml").write_text((PROJECT / "targets.toml").read_text() + (
        '\n[images."convert-ov2027.0"]\nstage = "convert"\ndockerfile = "Dockerfile.convert"\n'
        'base_image = "python:3.11-slim"\npython = "3.11"\nlock = "locks/convert-ov2027.0.txt"\nconverter = "tf-frontend"\n'
        '\n[targets."synthetic-0.8.2-ov2027.0"]\nextends = "synthetic-0.8.2"\nconvert_image = "convert-ov2027.0"\n'))
    targets = TargetsFile.load(project / "targets.toml")
    assert targets.target("synthetic-0.8.2-ov2027.0").convert_image.lock == "locks/convert-ov2027.0.txt"
    said: List[str] = []
    written = locks.compile_locks(Runner(dry_run=True, say=said.append), project, targets)
    assert "locks/convert-ov2027.0.txt" in written
    command = next(line for line in said if "--output-file locks/convert-ov2027.0.txt" in line)
    assert "--python-version 3.11" in command and command.endswith("pyproject.toml locks/convert-ov2027.0.in")
