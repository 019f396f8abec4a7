"""Write files and directories so that a final name only ever holds complete output.

Everything is written under a temporary sibling name and renamed into place; a crash
or an error leaves the previous content (or nothing) under the final name.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

TEMP_MARK = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary file path beside ``final``; rename it into place on success."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}{TEMP_MARK}", dir=str(final.parent))
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes 0600; the final file gets normal permissions
    try:
        yield tmp
        os.replace(str(tmp), str(final))
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_json(final: Path, data: Any) -> None:
    """Plain, sorted, stable JSON, written atomically."""
    write_bytes(final, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``final``; swap it in on success.

    A previous ``final`` is moved aside first and removed only after the new one is in
    place, so at every instant ``final`` is either the old or the new complete tree.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{TEMP_MARK}", dir=str(final.parent)))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the final directory gets normal permissions
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=str(final.parent)))
            os.replace(str(final), str(old / final.name))
        os.replace(str(tmp), str(final))
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temporaries(directory: Path) -> None:
    """Remove temporaries an interrupted run left behind (never a final name)."""
    if not directory.is_dir():
        return
    for path in directory.rglob(f".*{TEMP_MARK}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
