"""Image content tags: an image is rebuilt exactly when something it is built from changes."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from ds2ir.host.docker import Docker
from ds2ir.host.images import stage_image_tag
from ds2ir.model.targets_file import TargetsFile
from ds2ir.runner import Runner

PROJECT = Path(__file__).resolve().parents[2]
IMAGE = TargetsFile.load(PROJECT / "targets.toml").images["freeze-tf1.15.5"]
OTHER_LOCK = "locks/convert-ov2024.6.txt"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The files an image is built from, plus some it is not."""
    for name in ("pyproject.toml", IMAGE.dockerfile, IMAGE.lock, OTHER_LOCK, "README.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(str(PROJECT / name), str(tmp_path / name))
    shutil.copytree(str(PROJECT / "src"), str(tmp_path / "src"), ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("x = 1\n")
    return tmp_path


def tag(project: Path, base_image: str = IMAGE.base_image) -> str:
    return stage_image_tag(Docker(Runner(dry_run=True)), IMAGE, base_image, project)


def append(relative: str, text: str = "# changed\n") -> Callable[[Path], None]:
    def change(project: Path) -> None:
        assert (project / relative).is_file(), relative  # an edit, not a new file
        with open(project / relative, "a") as handle:
            handle.write(text)
    return change


def create(relative: str) -> Callable[[Path], None]:
    def change(project: Path) -> None:
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text("x = 2\n")
    return change


@pytest.mark.parametrize("change", [
    append("src/ds2ir/model/verify.py"), append("src/ds2ir/stages/convert.py", "\n"), create("src/ds2ir/model/new_module.py"),
    append(IMAGE.dockerfile), append(IMAGE.lock), append("pyproject.toml"),
], ids=["src-edit", "src-whitespace", "src-new-file", "dockerfile", "lock", "pyproject"])
def test_the_tag_changes_with_every_file_the_image_is_built_from(project: Path, change) -> None:
    before = tag(project)
    assert tag(project) == before  # stable while nothing changes
    change(project)
    assert tag(project) != before


def test_a_renamed_src_file_changes_the_tag(project: Path) -> None:
    before = tag(project)
    (project / "src/ds2ir/errors.py").rename(project / "src/ds2ir/faults.py")
    assert tag(project) != before


def test_the_tag_changes_with_the_base_image_build_arg(project: Path) -> None:
    assert tag(project, "python:3.7-slim") != tag(project, "ds2ir-offline/python:3.7-slim")


@pytest.mark.parametrize("change", [
    append("README.md"), append(OTHER_LOCK), append("tests/test_x.py"),
    create("src/ds2ir/model/__pycache__/verify.cpython-311.pyc"), create("src/ds2ir.egg-info/PKG-INFO"),
    append("src/ds2ir/host/matrix.py"), append("src/ds2ir/host/build.py", "\n"), create("src/ds2ir/host/new_module.py"),
], ids=["readme", "another-image's-lock", "tests", "bytecode", "egg-info", "host-edit", "host-whitespace", "host-new-file"])
def test_files_the_image_is_not_built_from_keep_the_tag(project: Path, change) -> None:
    before = tag(project)
    change(project)
    assert tag(project) == before
