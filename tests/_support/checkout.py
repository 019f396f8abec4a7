"""The checkout these tests belong to, found from their own location (never from the installed package)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ds2ir.host.project import Project

CHECKOUT = Path(__file__).resolve().parents[2]


def project(artifacts: Optional[Path] = None) -> Project:
    """This checkout's project as tasks.py builds it without an invoke.yaml: DS2IR_* variables honoured."""
    return Project.of_checkout(CHECKOUT).with_artifacts(artifacts)


def targets_file() -> Path:
    """The targets file the tasks read: $DS2IR_TARGETS, else this checkout's targets.toml."""
    return project().targets


#: the checkout's data/: the LDC93S1 recordings verify defaults to
DATA = CHECKOUT / "data"
