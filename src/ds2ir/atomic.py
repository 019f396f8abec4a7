"""Write files and directories so that a final name only ever holds complete output.

Everything is written under a temporary sibling name, synced to disk and renamed into
place; a crash or an error leaves the previous content (or nothing) under the final name.
A directory replaces its previous version in one step (Linux ``renameat2`` with
``RENAME_EXCHANGE``), so a reader never finds the final name missing.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ds2ir.errors import StorageError

TEMP_MARK = ".tmp-"
# Where the fallback swap (no renameat2) parks a previous tree: not a temporary, so cleanup
# never deletes it while it is the only copy (remove_stale_temporaries puts it back).
OLD_MARK = ".old-"
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


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
        _fsync(tmp)
        os.replace(str(tmp), str(final))
        _fsync(final.parent)
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

    The new tree is synced, then exchanged with the previous ``final`` in one rename, so at
    every instant ``final`` is the old or the new complete tree; the old one is removed after.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}{TEMP_MARK}", dir=str(final.parent)))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the final directory gets normal permissions
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.exists() or final.is_symlink():
            _swap(tmp, final)  # now tmp holds the old tree
        else:
            os.rename(str(tmp), str(final))
        _fsync(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _swap(new: Path, final: Path) -> None:
    """Put ``new`` under the name ``final`` and the previous ``final`` under the name ``new``.

    One atomic exchange where the kernel and filesystem offer it; elsewhere two renames that
    put the old tree back if the second fails, parking it meanwhile under a name cleanup keeps.
    """
    if _exchange(new, final):
        return
    old = final.with_name(f".{final.name}{OLD_MARK}{new.name.rsplit(TEMP_MARK, 1)[-1]}")
    os.rename(str(final), str(old))
    try:
        os.rename(str(new), str(final))
    except BaseException:
        os.rename(str(old), str(final))
        raise
    os.rename(str(old), str(new))


def _exchange(a: Path, b: Path) -> bool:
    """Exchange two names with renameat2(RENAME_EXCHANGE); False where that is not available."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:  # not glibc >= 2.28 (or not Linux)
        return False
    if renameat2(_AT_FDCWD, os.fsencode(str(a)), _AT_FDCWD, os.fsencode(str(b)), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):  # an old kernel, or a filesystem without exchange
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    return _LIBC


def _fsync(path: Path) -> None:
    """Flush a file's or directory's content (a directory: its entries) to disk."""
    fd = os.open(str(path), os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """Flush every regular file and directory under ``root``, directories after their content."""
    for directory, _, files in os.walk(str(root), topdown=False):
        for name in files:
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                _fsync(path)
        _fsync(Path(directory))


def remove_stale_temporaries(directory: Path) -> None:
    """Remove temporaries an interrupted run left behind (never a final name).

    A previous tree an interrupted fallback swap parked (``.NAME.old-*``) goes back to
    ``NAME`` when that is missing, and is removed otherwise.
    """
    if not directory.is_dir():
        return
    for parked in list(directory.rglob(f".*{OLD_MARK}*")):
        name = parked.name[1:].rsplit(OLD_MARK, 1)[0]
        if parked.is_dir() and not parked.is_symlink() and not (parked.parent / name).exists():
            os.rename(str(parked), str(parked.parent / name))
        elif parked.is_dir():
            shutil.rmtree(parked, ignore_errors=True)
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
