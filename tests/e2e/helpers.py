"""Helpers for end-to-end tests: run invoke tasks and stage commands for real."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ds2ir.host.assets_lock import LockEntry, write_lock
from ds2ir.host.docker import Docker
from ds2ir.host.images import ensure_stage_image
from ds2ir.model.layout import TARGETS_ENV
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file
from tests._support.stages import run_stage

PROJECT = Path(__file__).resolve().parents[2]


def invoke(*args: str, env: Optional[Dict[str, str]] = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run an invoke task of this checkout as a user would; output captured as text."""
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "-r", str(PROJECT), *args],
        cwd=str(PROJECT), env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"invoke {' '.join(args)} exited {result.returncode}:\n{result.stdout[-4000:]}")
    return result


def stage_command(docker: Docker, target_name: str, stage: str, args: List[str], artifacts: Path) -> str:
    """Run a ds2ir command in the target's real stage image; return its stdout."""
    target = load_target(targets_file(), target_name)
    spec = target.freeze_image if stage == "freeze" else target.convert_image
    image = ensure_stage_image(docker, spec, PROJECT)
    return run_stage(docker, step=args[0], image=image, args=[*args, "--target", target_name],
                            artifacts=artifacts, targets=targets_file(), capture=True)


def last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def pinned_assets_environment(directory: Path, targets_text: str, assets: Dict[str, bytes]) -> Dict[str, str]:
    """The environment for invoke with ``targets_text`` as the targets file, an assets lock pinning each
    URL to its genuine body (size, SHA-256) and an empty download cache, all under ``directory``."""
    targets = directory / "targets.toml"
    targets.write_text(targets_text)
    lock = directory / "assets.lock.toml"
    write_lock(lock, {url: LockEntry(size=len(body), sha256=hashlib.sha256(body).hexdigest()) for url, body in assets.items()})
    return {TARGETS_ENV: str(targets), "DS2IR_ASSETS_LOCK": str(lock), "DS2IR_CACHE": str(directory / "cache")}


def served_release_targets(target: str, checkpoint: str, **asset_urls: str) -> str:
    """The checkout's targets plus a release "test" (n_hidden 64) whose assets are at ``asset_urls``
    (``checkpoint_url``, ``model_url``) and ``target``, synthetic-small built from it with ``checkpoint``."""
    first = next(iter(asset_urls.values()))
    urls = "".join(f'{key} = "{url}"\n' for key, url in asset_urls.items())
    return (PROJECT / "targets.toml").read_text() + f"""
[releases."test"]
graph_version = 6
{urls}source_url = "{first}.source"
n_hidden = 64

[targets."{target}"]
extends = "synthetic-small"
release = "test"
checkpoint = "{checkpoint}"
"""
