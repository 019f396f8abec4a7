"""The download cache: one directory per URL holding the asset under its own name, a lock file per
asset so that one fetch of it runs at a time, and ``NAME.part`` beside it while it downloads."""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Iterator
from urllib.parse import urlparse

from ds2ir.host import digests

PART_SUFFIX = ".part"
#: how a file downloaded elsewhere gets into the cache, verified
IMPORT_HINT = "invoke fetch --import PATH"


def asset_name(url: str) -> str:
    """The file name an asset is saved under: the URL's last path segment, made safe."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", PurePosixPath(urlparse(url).path).name)
    return name if name and not name.startswith(".") else "asset" + name


def cache_path(url: str, cache: Path) -> Path:
    """Where the cache keeps ``url``: a directory per URL, the file under its own name."""
    key = digests.sha256(url.encode("utf-8"))[:16]
    return cache / key / asset_name(url)


def discard(path: Path) -> None:
    """Remove a file, and its per-URL cache directory if that leaves it empty."""
    if path.exists():
        path.unlink()
    remove_if_empty(path.parent)


def remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty, or already gone
        pass


@contextlib.contextmanager
def asset_lock(final: Path, url: str) -> Iterator[None]:
    """One download of an asset into a cache at a time: a second caller waits, then finds it cached.

    The lock file (``.NAME.lock`` beside the entry) is removed by its holder; a waiter that
    then holds a removed file's lock tries again on the new one.
    """
    lock = final.with_name(f".{final.name}.lock")
    while True:
        lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(str(lock), os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the holder removed the emptied directory meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another process is fetching {url} into {final.parent}; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(str(lock)).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        os.close(fd)
        remove_if_empty(final.parent)
