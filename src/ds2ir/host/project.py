"""The checkout: where targets.toml, the locks, the recordings and the artifacts are."""
from __future__ import annotations

import os
from pathlib import Path

from ds2ir.errors import ConfigError
from ds2ir.model.layout import TARGETS_ENV

PROJECT_ROOT_ENV = "DS2IR_PROJECT_ROOT"


def project_root() -> Path:
    """The checkout holding targets.toml: $DS2IR_PROJECT_ROOT, else the source tree."""
    env = os.environ.get(PROJECT_ROOT_ENV)
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[3]]
    for candidate in candidates:
        if (candidate / "targets.toml").is_file():
            return candidate
    raise ConfigError(
        f"cannot find the ds2ir checkout (looked for targets.toml in {candidates[0]}). "
        f"Run from a checkout installed with 'pip install -e .', or set {PROJECT_ROOT_ENV}."
    )


def recordings_dir() -> Path:
    """The checkout's ``data/``: the LDC93S1 recordings (16 kHz, 8 kHz, 44.1 kHz stereo) verify defaults to."""
    return project_root() / "data"


def targets_file() -> Path:
    """$DS2IR_TARGETS (set in the stage images), else the checkout's targets.toml."""
    env = os.environ.get(TARGETS_ENV)
    return Path(env) if env else project_root() / "targets.toml"
