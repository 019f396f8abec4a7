"""Hashed dependency locks: one per stage image and one for the host.

An image's lock (``lock`` in targets.toml) is compiled from the ``.in`` pins beside it
plus ds2ir's own dependencies (pyproject.toml), for the image's ``python``; the host's
lock from pyproject.toml's ``host`` and ``test`` extras, for :data:`HOST_PYTHON`. Every
lock is for Linux x86_64 and carries each file's sha256, for ``pip install
--require-hashes``. ``pip install -e '.[host,test]'`` stays the flexible way to set up
a host with another Python.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from ds2ir.errors import ConfigError, MissingInputError
from ds2ir.model.targets_file import TargetsFile
from ds2ir.runner import Runner

HOST_LOCK = "locks/host.txt"
HOST_PYTHON = "3.11"
HOST_EXTRAS = ("host", "test")
PYPROJECT = "pyproject.toml"
# The python:*-slim images (Debian bookworm) and GitHub's ubuntu-latest have glibc >= 2.28.
PLATFORM = "x86_64-manylinux_2_28"


@dataclass(frozen=True)
class Lock:
    """One lock file and what it is compiled from (paths relative to the checkout)."""

    output: str
    python: str
    inputs: Tuple[str, ...]
    extras: Tuple[str, ...] = ()

    def command(self, *, upgrade: bool = False) -> List[str]:
        """The ``uv pip compile`` call that writes this lock."""
        argv = [sys.executable, "-m", "uv", "pip", "compile", "--quiet", "--generate-hashes",
                "--python-version", self.python, "--python-platform", PLATFORM,
                "--custom-compile-command", "invoke lock", "--output-file", self.output, *self.inputs]
        for extra in self.extras:
            argv += ["--extra", extra]
        return argv + (["--upgrade"] if upgrade else [])


def locks(targets: TargetsFile) -> List[Lock]:
    """The host's lock, then each distinct image lock of the targets file."""
    found: Dict[str, Lock] = {HOST_LOCK: Lock(HOST_LOCK, HOST_PYTHON, (PYPROJECT,), HOST_EXTRAS)}
    for image in targets.images.values():
        lock = Lock(image.lock, image.python, (PYPROJECT, image.lock_input))
        if found.setdefault(image.lock, lock) != lock:
            raise ConfigError(f"{image.lock} is already the lock of another image or of the host, for other inputs",
                              file=targets.source, key=f"images.{image.name}.lock")
    return list(found.values())


def compile_locks(runner: Runner, project: Path, targets: TargetsFile, *, upgrade: bool = False) -> List[str]:
    """Write every lock with uv; keep locked versions unless ``upgrade``. Returns the lock paths."""
    if importlib.util.find_spec("uv") is None:
        raise MissingInputError("'invoke lock' needs uv: install it with pip install -e '.[host]' and retry.")
    for image in targets.images.values():
        if not (project / image.lock_input).is_file():
            raise ConfigError(f"{project / image.lock_input}, the pins the lock is compiled from, does not exist",
                              file=targets.source, key=f"images.{image.name}.lock")
    all_locks = locks(targets)
    for lock in all_locks:
        runner.run(lock.command(upgrade=upgrade), step=f"lock {lock.output}", cwd=project)
    return [lock.output for lock in all_locks]
