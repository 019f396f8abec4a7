"""PAX extended headers as the stream walk reads them (well-formed ones are honoured, each kind of
malformed one refused), and `archive.check`, which trust on first use runs before pinning a file.
(Mutation testing found these unpinned: the tests had only PAX headers refused at their first byte.)"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Sequence

import pytest

from ds2ir.errors import ArchiveError, UnsafeArchiveError
from ds2ir.host import archive
from tests._support.tarballs import release_tarball

PAX = "././@PaxHeader"


def record(key: str, value: str) -> bytes:
    """One PAX record, "LENGTH KEY=VALUE\\n", LENGTH counting itself."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime, info.mode = size, kind, 0, 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


def pax_tar(path: Path, payload: bytes, *, name: str = "member", data: bytes = b"content", size_field=None) -> Path:
    """A PAX header holding ``payload``, then one regular member (its header's size field may lie)."""
    raw = header(PAX, len(payload), tarfile.XHDTYPE) + padded(payload)
    raw += header(name, len(data) if size_field is None else size_field) + padded(data) + bytes(1024)
    path.write_bytes(raw)
    return path


def refused(path: Path) -> UnsafeArchiveError:
    with pytest.raises(UnsafeArchiveError) as excinfo:
        archive.check_stream(path)
    assert excinfo.value.member == PAX
    return excinfo.value


def test_the_record_helper_writes_lengths_that_count_themselves():
    assert record("a", "b") == b"6 a=b\n" and len(record("path", "x" * 200)) == int(record("path", "x" * 200).split()[0])


def test_pax_records_set_the_next_members_path_and_size(tmp_path):
    data = bytes(range(256)) * 3  # past one block: a misread size would misalign the walk
    long_name = "d/" + "n" * 150  # past ustar's 100 characters
    payload = record("comment", "a value with = and spaces") + record("path", long_name) + record("size", str(len(data)))
    tar = pax_tar(tmp_path / "a.tar", payload, data=data, size_field=0)  # the header's size field says 0
    archive.check_stream(tar)  # the walk skips the member by the PAX size, or it would read data as a header
    out = archive.extract(tar, tmp_path / "out", strip_single_root=False)
    assert (out / long_name).read_bytes() == data


def test_a_nul_byte_ends_the_records(tmp_path):
    archive.check_stream(pax_tar(tmp_path / "a.tar", record("comment", "x") + b"\0garbage that is no record"))


def test_a_value_may_start_with_a_space_and_a_length_may_have_five_digits(tmp_path):
    archive.check_stream(pax_tar(tmp_path / "a.tar", b"7 a= b\n"))
    long = record("comment", "c" * 10000)
    assert len(long.split()[0]) == 5
    archive.check_stream(pax_tar(tmp_path / "b.tar", long))


def test_256_records_are_accepted_and_257_refused(tmp_path):
    archive.check_stream(pax_tar(tmp_path / "a.tar", record("a", "b") * archive.MAX_PAX_RECORDS))
    error = refused(pax_tar(tmp_path / "b.tar", record("a", "b") * (archive.MAX_PAX_RECORDS + 1)))
    assert error.reason == "holds more than 256 PAX records"


@pytest.mark.parametrize("payload", [
    b"abc path=x\n",  # no length
    b"000011 a=b\n",  # a length longer than any record under the bound can need
    b" 6 a=b\n",  # no length before the space
])
def test_a_record_without_a_decimal_length_is_refused(tmp_path, payload):
    error = refused(pax_tar(tmp_path / "a.tar", payload))
    assert error.reason == "has a malformed PAX record (no decimal length)"
    assert f"member '{PAX}' has a malformed PAX record (no decimal length)." in str(error)


@pytest.mark.parametrize("payload", [
    b"99 path=x\n",  # longer than the header
    b"11 path=abc\n",  # one short: the record does not end in a newline
    b"9 pathxx\n",  # no '='
    b"7 =a=b\n",  # an empty key (the value holds '=')
    record("a", "b") + b"9 pathxx\n",  # a bad record after a good one
])
def test_a_malformed_record_is_refused(tmp_path, payload):
    assert refused(pax_tar(tmp_path / "a.tar", payload)).reason == "has a malformed PAX record"


def test_a_size_that_is_no_number_is_refused_quoting_its_start(tmp_path):
    error = refused(pax_tar(tmp_path / "a.tar", record("size", "12a" + "9" * 30)))
    assert error.reason == "has a PAX size that is not a number: b'12a99999999999999999'"


def files(directory: Path) -> Sequence[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_check_makes_every_check_of_extract_and_writes_nothing(tmp_path):
    good = release_tarball(tmp_path / "good.tar.gz")
    before = files(tmp_path)
    assert archive.check(good) is None and files(tmp_path) == before
    with pytest.raises(UnsafeArchiveError, match="makes the archive expand past 100 bytes"):
        archive.check(good, max_total_bytes=100)
    with pytest.raises(UnsafeArchiveError, match="makes the archive hold more than 2 members") as excinfo:
        archive.check(good, max_members=2)
    assert excinfo.value.archive == str(good)
    payload = record("path", "../escape")
    with pytest.raises(UnsafeArchiveError, match=r"has a '\.\.' component in '\.\./escape'"):
        archive.check(pax_tar(tmp_path / "escape.tar", payload))
    assert files(tmp_path) == sorted(before + ["escape.tar"])


def test_check_of_a_file_that_is_no_tar_names_it_and_says_nothing_was_extracted(tmp_path):
    text = tmp_path / "notes.tar.gz"
    text.write_bytes(b"plain text, not an archive" * 40)
    with pytest.raises(ArchiveError) as excinfo:
        archive.check(text)
    assert str(text) in str(excinfo.value) and "Nothing was extracted." in str(excinfo.value)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(release_tarball(tmp_path / "whole.tar", gz=False).read_bytes()[:1000])
    with pytest.raises(ArchiveError, match=r"ends inside .* Nothing was extracted\."):
        archive.check(cut)
