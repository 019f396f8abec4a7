"""One checkout's files: targets.toml, the locks, the recordings, the artifacts, the download cache.

tasks.py builds the one :class:`Project` from its own directory and invoke's configuration and hands it
to everything on the host; no module finds a checkout by itself, so two clones on one machine never read
each other's files whichever clone the package was installed from.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from ds2ir.errors import ConfigError
from ds2ir.host import assets_lock, manifest
from ds2ir.model.layout import TARGETS_ENV
from ds2ir.model.targets import Target
from ds2ir.model.targets_file import TargetsFile

CACHE_ENV = "DS2IR_CACHE"
#: the ``ds2ir`` settings of invoke's configuration (invoke.yaml beside tasks.py), relative to the checkout
DEFAULTS = {
    "targets": "targets.toml",
    "assets_lock": assets_lock.LOCK_FILE_NAME,
    "outputs_lock": manifest.LOCK_FILE_NAME,
    "recordings": "data",
    "artifacts": "artifacts",
}
#: environment variables that override a setting (kept from before invoke.yaml; the tests and images use them)
ENVIRONMENT = {"targets": TARGETS_ENV, "assets_lock": assets_lock.ASSETS_LOCK_ENV, "cache": CACHE_ENV}


@dataclass(frozen=True)
class Project:
    """Where a checkout keeps what the host reads and writes; every path is absolute."""

    root: Path
    targets: Path
    assets_lock: Path
    outputs_lock: Path
    cache: Path
    recordings: Path
    artifacts: Path

    @classmethod
    def of_checkout(cls, root: Path, settings: Optional[Mapping[str, object]] = None,
                    environ: Optional[Mapping[str, str]] = None) -> "Project":
        """The project of the checkout at ``root``: ``settings`` (invoke's ``ds2ir`` configuration) over
        the defaults, the DS2IR_* variables of ``environ`` (default: this process's) over both."""
        environ = os.environ if environ is None else environ
        given = dict(settings or {})
        unknown = sorted(set(given) - set(DEFAULTS) - {"cache"})
        if unknown:
            raise ConfigError(f"'ds2ir.{unknown[0]}' in invoke's configuration is not a ds2ir setting; the settings are "
                              f"{', '.join(sorted([*DEFAULTS, 'cache']))} (invoke.yaml beside tasks.py).")
        root = root.resolve()
        paths = {}
        for key in [*DEFAULTS, "cache"]:
            variable, value = environ.get(ENVIRONMENT.get(key, "")), given.get(key) or DEFAULTS.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"'ds2ir.{key}' in invoke's configuration must be a path, got {value!r}.")
            if variable:  # relative to where the command runs, as a shell would read it
                paths[key] = Path(variable).expanduser().absolute()
            else:  # relative to the checkout
                paths[key] = root / Path(value).expanduser() if value else _user_cache(environ)
        return cls(root=root, **paths)

    def with_artifacts(self, artifacts: Optional[Path]) -> "Project":
        """This project writing its artifacts to ``artifacts`` (a task's --artifacts), or unchanged for None."""
        return dataclasses.replace(self, artifacts=artifacts.resolve()) if artifacts else self

    def targets_file(self, *, check_files: bool = True) -> TargetsFile:
        """targets.toml, validated; ``check_files``: every image's Dockerfile and lock must be in the checkout."""
        return TargetsFile.load(self.targets, project=self.root if check_files else None)

    def target(self, name: Optional[str] = None) -> Target:
        """The named target (default: the targets file's default_target)."""
        return self.targets_file().target(name)


def _user_cache(environ: Mapping[str, str]) -> Path:
    """$XDG_CACHE_HOME/ds2ir, else ~/.cache/ds2ir: downloads are shared by the user's checkouts."""
    xdg = environ.get("XDG_CACHE_HOME")
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache"
    return base / "ds2ir"
