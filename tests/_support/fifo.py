"""FIFOs for tests of code that must refuse them: a blocked reader is released, so a regression fails instead of hanging."""
from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def fifo(path: Path, *, release_after: float = 2.0) -> Iterator[Path]:
    """Make a FIFO at ``path``; from ``release_after`` seconds on, a reader stuck opening it gets end of file."""
    os.mkfifo(str(path))
    done = threading.Event()

    def release() -> None:
        if done.wait(release_after):
            return
        while not done.wait(0.1):
            try:
                os.close(os.open(str(path), os.O_WRONLY | os.O_NONBLOCK))  # succeeds only while a reader waits
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: no reader yet
                    return

    thread = threading.Thread(target=release, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        thread.join()
