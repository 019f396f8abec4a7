"""Real faults for tests: small and read-only filesystems, killed processes, tree digests."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (mount(8) syntax) at ``path``, unmounted afterwards; skips unless root may mount."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {path} (needs root): {mounted.stdout.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)]).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)  # still busy: detach it


def remount_read_only(path: Path) -> None:
    """Make a mounted filesystem read-only for everyone, root included."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem of ``directory`` is full; return it."""
    filler = directory / "filler"
    with open(str(filler), "wb", buffering=0) as handle:  # unbuffered: closing must not write again
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def tree_digests(root: Path) -> Dict[str, str]:
    """relative path -> SHA-256 of every file under ``root`` (what "unchanged" means)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll ``condition`` until it returns something true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """End a process started with ``start_new_session=True`` and everything it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    proc.wait()


def kill(proc: subprocess.Popen) -> Optional[int]:
    """``kill -9`` one process (not its children) and reap it; its exit status."""
    os.kill(proc.pid, signal.SIGKILL)
    return proc.wait()
