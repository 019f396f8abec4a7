"""A private workspace for end-to-end tests that change things: a targets file with `given-small`
(synthetic-small's weights, its checkpoint given in the release layout, so an input and not a
stage), an artifacts directory and, for Dockerfile and src/ edits, a private copy of the checkout."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List
from unittest import mock

from ds2ir.model.layout import TARGETS_ENV, ArtifactLayout
from tests.e2e.helpers import PROJECT, invoke, stage_command

TARGET = "given-small"
STAGES = ["freeze", "reference", "convert", "check"]
GIVEN_SMALL = f"""
[targets."{TARGET}"]
description = "synthetic-small's architecture and weights, its checkpoint given as a release's is"
extends = "synthetic-small"
checkpoint = "release"
"""


def ran(output: str, target: str = TARGET) -> List[str]:
    """The stages a build ran, in order, from its output."""
    return re.findall(rf"^\[{re.escape(target)}\] (\w+): running \(", output, flags=re.MULTILINE)


def write_checkpoint(docker, targets: Path, artifacts: Path) -> None:
    """The target's seeded weights in the release layout, written by the freeze image (make-checkpoint)."""
    with mock.patch.dict(os.environ, {TARGETS_ENV: str(targets)}):
        stage_command(docker, TARGET, "freeze", ["make-checkpoint"], artifacts)


class Workspace:
    """A private targets file and artifacts directory, and optionally a private checkout."""

    def __init__(self, root: Path, artifacts: Path, targets_text: str, project: Path = PROJECT):
        self.root, self.artifacts, self.project = root, artifacts, project
        self.targets = root / "targets.toml"
        self.targets.write_text(targets_text)

    def edit_targets(self, old: str, new: str) -> None:
        text = self.targets.read_text()
        assert text.count(old) == 1, old
        self.targets.write_text(text.replace(old, new))

    def set_key(self, line: str) -> None:
        """Add ``key = value`` to given-small (the last table of the file)."""
        self.targets.write_text(self.targets.read_text() + line + "\n")

    def build(self, *extra: str, task: str = "build", check: bool = True) -> subprocess.CompletedProcess:
        """`invoke <task> --target given-small --artifacts <ours>` with our targets file."""
        return self.invoke(task, "--target", TARGET, "--artifacts", str(self.artifacts), *extra, check=check)

    def invoke(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """An invoke task of our checkout (the real one unless a copy was made) with our targets file."""
        env = {TARGETS_ENV: str(self.targets)}
        if self.project == PROJECT:
            return invoke(*args, env=env, check=check)
        env["PYTHONPATH"] = str(self.project / "src")
        result = subprocess.run([sys.executable, "-m", "invoke", "-r", str(self.project), *args],
                                cwd=str(self.project), env=dict(os.environ, **env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True)
        assert not check or result.returncode == 0, result.stdout[-4000:]
        return result

    @property
    def layout(self) -> ArtifactLayout:
        return ArtifactLayout(self.artifacts, TARGET)


def checkout_copy(destination: Path) -> Path:
    """The checkout's tracked files as they are now (uncommitted edits included), without artifacts."""
    listed = subprocess.run(["git", "-C", str(PROJECT), "ls-files", "-z"], stdout=subprocess.PIPE, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = PROJECT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(str(source), str(destination / name))
    return destination
