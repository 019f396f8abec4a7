"""SHA-256, the one digest ds2ir pins, stamps and tags with: of files, of bytes, of plain data."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Tuple

#: files are read in blocks of this size (checkpoint archives run to gigabytes)
CHUNK = 1024 * 1024


def measure(path: Path) -> Tuple[int, str]:
    """Size and SHA-256 of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(str(path), "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def file_sha256(path: Path) -> str:
    return measure(path)[1]


def sha256(*parts: bytes) -> str:
    """SHA-256 of the parts one after another."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def data_sha256(data: object) -> str:
    """SHA-256 of plain data in its one JSON form (sorted keys)."""
    return sha256(json.dumps(data, sort_keys=True).encode())
