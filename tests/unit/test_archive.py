"""ds2ir.host.archive: safe, all-or-nothing extraction of release tarballs."""
from __future__ import annotations

import gzip
import io
import os
import tarfile
import tracemalloc
from pathlib import Path
from typing import Dict, Sequence

import pytest

from ds2ir.errors import ArchiveError, UnsafeArchiveError
from ds2ir.host.archive import extract
from tests._support.tarballs import Member, make_tar, release_tarball

ROOT = "deepspeech-0.8.2-checkpoint"


def snapshot(directory: Path) -> Dict[str, bytes]:
    """Every path under ``directory`` (dirs and links too) with its content or target."""
    out = {}
    for path in sorted(directory.rglob("*")):
        key = str(path.relative_to(directory))
        if path.is_symlink():
            out[key] = b"-> " + os.readlink(str(path)).encode()
        elif path.is_file():
            out[key] = path.read_bytes()
        else:
            out[key] = b"<dir>"
    return out


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A parent holding an existing destination, to prove failures leave both alone."""
    parent = tmp_path / "out"
    (parent / "dest").mkdir(parents=True)
    (parent / "dest" / "old.txt").write_bytes(b"previous extraction")
    return parent


def test_release_tarball_is_extracted_without_its_top_directory(tmp_path: Path, out: Path) -> None:
    archive = release_tarball(tmp_path / "ckpt.tar.gz")
    dest = extract(archive, out / "dest")
    assert dest == out / "dest"
    assert sorted(p.name for p in dest.iterdir()) == [
        "best_dev-732522.data-00000-of-00001", "best_dev-732522.index", "checkpoint", "flags.txt",
    ]
    assert (dest / "checkpoint").read_bytes() == b'model_checkpoint_path: "best_dev-732522"\n'
    assert not (dest / "old.txt").exists()  # replaced whole
    assert sorted(p.name for p in out.iterdir()) == ["dest"]  # no temporaries left


def test_top_directory_is_kept_when_asked_or_when_there_is_none(tmp_path: Path, out: Path) -> None:
    archive = release_tarball(tmp_path / "ckpt.tar", gz=False)
    extract(archive, out / "kept", strip_single_root=False)
    assert (out / "kept" / ROOT / "flags.txt").is_file()

    flat = make_tar(tmp_path / "flat.tar.gz", [("a.txt", "file", b"a"), ("b/c.txt", "file", b"c")])
    extract(flat, out / "flat")
    assert snapshot(out / "flat") == {"a.txt": b"a", "b": b"<dir>", "b/c.txt": b"c"}


def test_links_inside_the_tree_are_kept(tmp_path: Path, out: Path) -> None:
    # DeepSpeech's source tree links training/deepspeech_training/VERSION -> ../../VERSION.
    archive = make_tar(tmp_path / "src.tar.gz", [
        (f"{ROOT}/VERSION", "file", b"0.8.2\n"),
        (f"{ROOT}/training/deepspeech_training/VERSION", "symlink", "../../VERSION"),
        (f"{ROOT}/bin/run.sh", "file", b"#!/bin/sh\n"),
        (f"{ROOT}/bin/run-copy.sh", "hardlink", f"{ROOT}/bin/run.sh"),
    ])
    dest = extract(archive, out / "dest")
    assert (dest / "training/deepspeech_training/VERSION").read_bytes() == b"0.8.2\n"
    assert os.path.samefile(str(dest / "bin/run.sh"), str(dest / "bin/run-copy.sh"))


MALICIOUS = {
    "traversal": ([(f"{ROOT}/ok", "file", b"x"), ("../x", "file", b"evil")], "../x", "'..'"),
    "nested-traversal": ([(f"{ROOT}/a/../../x", "file", b"evil")], f"{ROOT}/a/../../x", "'..'"),
    "absolute": ([("/etc/x", "file", b"evil")], "/etc/x", "absolute"),
    "symlink-escape": ([(f"{ROOT}/link", "symlink", "../../etc")], f"{ROOT}/link", "outside"),
    "symlink-absolute": ([(f"{ROOT}/link", "symlink", "/etc/passwd")], f"{ROOT}/link", "outside"),
    # a -> . is harmless alone, but a/.. then leaves the destination.
    "symlink-chain-escape": (
        [(f"{ROOT}/a", "symlink", "."), (f"{ROOT}/b", "symlink", "a/..")], f"{ROOT}/b", "outside",
    ),
    "symlink-loop": ([(f"{ROOT}/a", "symlink", "b"), (f"{ROOT}/b", "symlink", "a")], f"{ROOT}/a", "outside"),
    "write-through-symlink": (
        [(f"{ROOT}/sub/", "dir", None), (f"{ROOT}/d", "symlink", "sub"), (f"{ROOT}/d/x", "file", b"x")],
        f"{ROOT}/d/x", "under the symlink",
    ),
    "hardlink-escape": (
        [(f"{ROOT}/a", "file", b"x"), (f"{ROOT}/h", "hardlink", "../outside")], f"{ROOT}/h", "'..'",
    ),
    "hardlink-absolute": ([(f"{ROOT}/h", "hardlink", "/etc/passwd")], f"{ROOT}/h", "absolute"),
    "hardlink-out-of-root": (
        [("top/a", "file", b"x"), ("top/h", "hardlink", "other/a")], "top/h", "outside the top directory",
    ),
    "hardlink-to-nothing": ([("a", "file", b"x"), ("h", "hardlink", "missing")], "h", "not an earlier regular file"),
    "device": ([(f"{ROOT}/ok", "file", b"x"), (f"{ROOT}/null", "chr", None)], f"{ROOT}/null", "device"),
    "fifo": ([(f"{ROOT}/pipe", "fifo", None)], f"{ROOT}/pipe", "fifo"),
    "duplicate": ([("a", "file", b"x"), ("a", "file", b"y")], "a", "twice"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_archives_are_refused_and_change_nothing(tmp_path: Path, out: Path, case: str) -> None:
    members, member, why = MALICIOUS[case]
    archive = make_tar(tmp_path / f"{case}.tar.gz", members)
    before = snapshot(out)
    with pytest.raises(UnsafeArchiveError) as raised:
        extract(archive, out / "dest")
    assert raised.value.member == member
    assert f"'{member}'" in str(raised.value) and why in str(raised.value)
    assert snapshot(out) == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "outside").exists()


def _many(count: int, size: int) -> Sequence[Member]:
    return [(f"{ROOT}/f{i:03d}", "file", bytes(size)) for i in range(count)]


@pytest.mark.parametrize("limits, culprit, message", [
    ({"max_total_bytes": 2500}, f"{ROOT}/f002", "expand past 2500 bytes"),
    ({"max_members": 5}, f"{ROOT}/f005", "more than 5 members"),
])
def test_archives_expanding_past_a_limit_are_refused(
    tmp_path: Path, out: Path, limits: Dict[str, int], culprit: str, message: str
) -> None:
    archive = make_tar(tmp_path / "bomb.tar.gz", _many(10, 1000))
    before = snapshot(out)
    with pytest.raises(UnsafeArchiveError, match=message) as raised:
        extract(archive, out / "dest", **limits)
    assert raised.value.member == culprit
    assert "raise" in str(raised.value)  # says how to proceed when the archive is trusted
    assert snapshot(out) == before


def test_truncated_and_non_tar_files_are_archive_errors(tmp_path: Path, out: Path) -> None:
    good = release_tarball(tmp_path / "good.tar.gz").read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball at all" * 10)
    before = snapshot(out)
    for bad in (truncated, garbage, tmp_path / "missing.tar.gz"):
        with pytest.raises(ArchiveError) as raised:
            extract(bad, out / "dest")
        assert not isinstance(raised.value, UnsafeArchiveError)
        assert str(bad) in str(raised.value)
        assert snapshot(out) == before


def test_modes_are_normalised_and_mtimes_kept(tmp_path: Path, out: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, mode in (("top/script", 0o4777), ("top/data", 0o666)):
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.size = mode, 1_600_000_000, 1
            tar.addfile(info, io.BytesIO(b"x"))
    archive = tmp_path / "modes.tar"
    archive.write_bytes(raw.getvalue())
    dest = extract(archive, out / "dest")
    assert (dest / "script").stat().st_mode & 0o7777 == 0o755  # no setuid, not world-writable
    assert (dest / "data").stat().st_mode & 0o7777 == 0o644
    assert int((dest / "data").stat().st_mtime) == 1_600_000_000


def _raw_header(name: str, size: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime = size, kind, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


@pytest.mark.parametrize("damage", ["flipped CRC bit", "flipped data bit", "last 4 bytes cut"])
def test_a_damaged_gzip_stream_is_refused(tmp_path: Path, out: Path, damage: str) -> None:
    data = bytearray(release_tarball(tmp_path / "good.tar.gz").read_bytes())
    if damage == "flipped CRC bit":
        data[-6] ^= 0x01
    elif damage == "flipped data bit":
        data[len(data) // 2] ^= 0x10
    else:
        del data[-4:]
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(bytes(data))
    before = snapshot(out)
    with pytest.raises(ArchiveError, match="corrupt|truncated") as raised:
        extract(bad, out / "dest")
    assert str(bad) in str(raised.value) and "fetch it again" in str(raised.value)
    assert snapshot(out) == before


def test_a_pax_header_of_40k_digits_is_refused_before_tarfile_parses_it(tmp_path: Path, out: Path) -> None:
    """CVE-2024-6232: CPython before 3.11.10 takes seconds (quadratic) on such a header."""
    payload = b"0" * 40000 + b"\n"
    raw = _raw_header("././@PaxHeader", len(payload), tarfile.XHDTYPE) + payload + bytes(-len(payload) % 512 + 1024)
    bad = tmp_path / "pax.tar.gz"
    bad.write_bytes(gzip.compress(raw, 9, mtime=0))
    assert bad.stat().st_size < 200
    before = snapshot(out)
    with pytest.raises(UnsafeArchiveError, match="malformed PAX record") as raised:
        extract(bad, out / "dest")
    assert raised.value.member == "././@PaxHeader"
    assert snapshot(out) == before


def test_a_well_formed_pax_header_past_the_bound_is_refused(tmp_path: Path, out: Path) -> None:
    record = b"path=" + b"a" * 70000
    record = f"{len(record) + 7} ".encode() + record + b"\n"
    raw = _raw_header("././@PaxHeader", len(record), tarfile.XHDTYPE) + record + bytes(-len(record) % 512 + 1024)
    bad = tmp_path / "pax.tar"
    bad.write_bytes(raw)
    with pytest.raises(UnsafeArchiveError, match=f"PAX header of {len(record)} bytes, past the bound of 65536"):
        extract(bad, out / "dest")


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.XHDTYPE])
def test_an_extended_header_declaring_512_mib_is_refused_without_allocating_it(
    tmp_path: Path, out: Path, kind: bytes
) -> None:
    bad = tmp_path / "big.tar.gz"
    with gzip.open(str(bad), "wb", compresslevel=1) as stream:
        stream.write(_raw_header("././@LongLink", 512 * 1024 ** 2, kind))
        for _ in range(16):
            stream.write(bytes(1024 ** 2))  # 16 MiB of it really there
    before = snapshot(out)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeArchiveError, match="header of 536870912 bytes, past the bound"):
            extract(bad, out / "dest")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 ** 2, f"{peak} bytes allocated"
    assert snapshot(out) == before


def test_a_corrupt_member_header_inside_the_archive_is_refused(tmp_path: Path, out: Path) -> None:
    """tarfile alone stops at such a header and reports the members before it as the whole archive."""
    plain = release_tarball(tmp_path / "good.tar", gz=False).read_bytes()
    with tarfile.open(str(tmp_path / "good.tar")) as tar:
        second = tar.getmembers()[2].offset
    bad = tmp_path / "bad.tar"
    bad.write_bytes(plain[:second] + b"X" + plain[second + 1:])
    before = snapshot(out)
    with pytest.raises(ArchiveError, match="checksum is wrong"):
        extract(bad, out / "dest")
    assert snapshot(out) == before
