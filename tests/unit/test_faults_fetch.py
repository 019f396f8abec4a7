"""A download or an extraction killed with SIGKILL: nothing under a final name, the next run finishes the job."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile

from ds2ir import atomic
from ds2ir.host import archive
from ds2ir.host.asset_cache import PART_SUFFIX, cache_path
from ds2ir.host.assets_lock import LockEntry, write_lock
from ds2ir.host.fetch import fetch
from tests._support.faults import kill, wait_for
from tests._support.http_server import asset_server  # noqa: F401 - the fixture

ASSET = "/releases/v0.0-test/killed-checkpoint.tar.gz"
BODY = hashlib.sha256(b"killed").digest() * (64 * 1024)  # 2 MiB, deterministic


def test_killed_download_leaves_only_the_part_file_and_the_next_fetch_resumes(tmp_path, asset_server):  # noqa: F811
    url = asset_server.add(ASSET, BODY, trickle=64 * 1024)  # ~1.6 s for the whole body
    lock, cache = tmp_path / "assets.lock.toml", tmp_path / "cache"
    write_lock(lock, {url: LockEntry(len(BODY), hashlib.sha256(BODY).hexdigest())})
    final = cache_path(url, cache)
    part = final.with_name(final.name + PART_SUFFIX)
    script = ("import sys; from pathlib import Path; from ds2ir.host.fetch import fetch; "
              "fetch(sys.argv[1], lock_path=Path(sys.argv[2]), cache=Path(sys.argv[3]), progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script, url, str(lock), str(cache)])
    wait_for(lambda: part.is_file() and part.stat().st_size >= 256 * 1024, timeout=20, what="half a download")

    assert kill(proc) == -9
    arrived = part.stat().st_size
    assert not final.exists() and 0 < arrived < len(BODY)

    assert fetch(url, lock_path=lock, cache=cache, progress=False).read_bytes() == BODY
    assert asset_server.requests_for(ASSET)[-1]["range"] == f"bytes={arrived}-"
    assert not part.exists()


def test_killed_extraction_leaves_the_previous_checkpoint_as_it_was(tmp_path):
    tarball = tmp_path / "release.tar.gz"
    with tarfile.open(str(tarball), "w:gz") as tar:  # many members: extraction takes seconds
        for index in range(20000):
            data = hashlib.sha256(str(index).encode()).digest() * 32
            info = tarfile.TarInfo(f"release/part-{index:05d}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "target" / "checkpoint"
    with atomic.atomic_dir(dest) as tmp:
        (tmp / "best_dev-1.index").write_text("previous")
    script = "import sys; from pathlib import Path; from ds2ir.host import archive; archive.extract(Path(sys.argv[1]), Path(sys.argv[2]))"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tarball), str(dest)])

    def extracting() -> bool:
        return any(any(True for _ in p.iterdir()) for p in dest.parent.glob(f".checkpoint{atomic.TEMP_MARK}*"))

    wait_for(extracting, timeout=30, what="extraction to start writing", interval=0.005)
    assert kill(proc) == -9
    assert sorted(os.listdir(str(dest))) == ["best_dev-1.index"] and (dest / "best_dev-1.index").read_text() == "previous"
    assert list(dest.parent.glob(f".checkpoint{atomic.TEMP_MARK}*")), "the kill came too late to test anything"

    atomic.remove_stale_temporaries(dest.parent)  # what the next build does first
    assert sorted(p.name for p in dest.parent.iterdir()) == ["checkpoint"]
    archive.extract(tarball, dest)
    assert len(os.listdir(str(dest))) == 20000
