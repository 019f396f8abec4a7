"""Build small tarballs, well-formed or malicious, for extraction and fetch tests."""
from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

# (name, kind, payload): kind is file, dir, symlink, hardlink, chr or fifo; payload is a
# file's bytes or a link's target.
Member = Tuple[str, str, Optional[object]]

MTIME = 1_600_000_000
_TYPES = {
    "file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE,
}


def make_tar(path: Path, members: Sequence[Member], *, gz: bool = True) -> Path:
    """Write exactly the given members (names unchecked), byte-for-byte reproducibly."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.type = _TYPES[kind]
            info.mtime = MTIME
            info.mode = 0o755 if kind == "dir" else 0o644
            data = None
            if kind == "file":
                data = payload if isinstance(payload, bytes) else b""
                info.size = len(data)
            elif kind in ("symlink", "hardlink"):
                info.linkname = str(payload)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    content = raw.getvalue()
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    return path


def release_tarball(path: Path, root: str = "deepspeech-0.8.2-checkpoint",
                    files: Optional[Dict[str, bytes]] = None, *, gz: bool = True) -> Path:
    """A tarball packed as DeepSpeech's release: one top-level directory holding the files."""
    files = files if files is not None else {
        "checkpoint": b'model_checkpoint_path: "best_dev-732522"\n',
        "best_dev-732522.index": b"index" * 10,
        "best_dev-732522.data-00000-of-00001": bytes(range(256)) * 8,
        "flags.txt": b"--n_hidden=2048\n",
    }
    members = [(root + "/", "dir", None)] + [(f"{root}/{name}", "file", data) for name, data in sorted(files.items())]
    return make_tar(path, members, gz=gz)


def tarball_bytes(files: Dict[str, bytes], root: str = "deepspeech-0.8.2-checkpoint") -> bytes:
    """A release-shaped .tar.gz in memory, stored uncompressed so its size follows its content."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=0, mtime=0)
