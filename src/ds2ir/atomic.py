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

from ds2ir.errors import StorageError

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
            # Named as a temporary too, so a crash between the two renames leaves nothing uncollected.
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}{TEMP_MARK}old-", dir=str(final.parent)))
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


@contextlib.contextmanager
def storage_errors(directory: Path) -> Iterator[None]:
    """Report a write that failed under ``directory`` (full, read-only, forbidden) as a StorageError.

    Other OS errors pass unchanged: they are bugs or faults this module cannot explain.
    """
    try:
        yield
    except OSError as exc:
        written = exc.filename2 or exc.filename  # copies and renames name the destination second
        error = StorageError.from_os_error(exc, final_name(str(written)) if written else f"a file under {directory}")
        if error is None:
            raise
        raise error from exc


def final_name(path: str) -> str:
    """The final name a temporary path stands for (``d/.ir.tmp-x1/a.bin`` -> ``d/ir/a.bin``), for messages."""
    parts = [part[1:].split(TEMP_MARK)[0] if part.startswith(".") and TEMP_MARK in part else part
             for part in Path(path).parts]
    return str(Path(*parts))
