"""Extract downloaded tarballs without trusting them.

Every member is checked before a single byte is written: names must be relative and
free of ``..``, links must resolve inside the destination (following the archive's own
symlinks the way the filesystem will), devices and fifos are refused, and the member
count and expanded size are bounded. Before ``tarfile`` parses anything, the decompressed
stream is walked once on its own: every 512-byte header's checksum, the size of extended
headers (PAX records, GNU long names) and the stream's end, where gzip checks its CRC32
and length trailer. Extraction then goes into a temporary directory beside the
destination that is swapped into place, so a failure leaves the destination as it was.
"""
from __future__ import annotations

import bz2
import collections
import gzip
import io
import lzma
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Deque, Dict, List, NamedTuple, Optional, Tuple

from ds2ir.atomic import atomic_dir
from ds2ir.errors import ArchiveError, UnsafeArchiveError

# Generous for DeepSpeech's checkpoint (~2 GB expanded) and source tree, tiny for a bomb.
DEFAULT_MAX_TOTAL_BYTES = 8 * 1024 ** 3
DEFAULT_MAX_MEMBERS = 100_000
# As many symlink hops as Linux follows before ELOOP.
MAX_LINK_HOPS = 40
COPY_CHUNK = 1024 * 1024
BLOCK = 512
# tarfile reads an extended header whole, and before Python 3.11.10/3.12.6 parses PAX records
# in quadratic time (CVE-2024-6232); real ones hold a path or a few attributes.
MAX_EXTENDED_HEADER_BYTES = 64 * 1024
MAX_PAX_RECORDS = 256
# Header type flags as tarfile reads them: extended headers, and members followed by data.
_EXTENDED_HEADERS = {b"x": "PAX", b"g": "PAX global", b"X": "PAX", b"L": "GNU long name", b"K": "GNU long link name"}
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")  # links, devices, directories, fifos: size ignored
_DECOMPRESSORS: Dict[bytes, Callable[[str], io.BufferedIOBase]] = {  # GzipFile, BZ2File, LZMAFile
    b"\x1f\x8b": lambda path: gzip.open(path, "rb"),
    b"BZh": lambda path: bz2.open(path, "rb"),
    b"\xfd7zXZ\x00": lambda path: lzma.open(path, "rb"),
}

Parts = Tuple[str, ...]

_NOT_A_RELEASE = (
    "A release archive never holds such a member: the file is corrupt, tampered with or not "
    "the expected asset. Delete it and fetch it again (fetched files are checked against "
    "assets.lock.toml), or find out where it came from."
)

_RAISE_SIZE = "If the archive is trusted, raise the size limit (max_total_bytes) and retry."


def extract(
    archive: Path,
    dest: Path,
    *,
    strip_single_root: bool = True,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Extract a .tar or .tar.gz into ``dest`` (replacing it whole) and return ``dest``.

    With ``strip_single_root``, an archive whose members all sit under one top-level
    directory (as release tarballs do) has that directory's content put in ``dest``.
    Raises :class:`UnsafeArchiveError` for a dangerous or oversized archive and
    :class:`ArchiveError` for an unreadable one; ``dest`` is then left untouched.
    """
    if not archive.is_file():
        raise ArchiveError(f"The archive {archive} does not exist or is not a file; fetch it first.")
    check_stream(archive, max_total_bytes=max_total_bytes, where=f"{dest} was left as it was.")
    try:
        with tarfile.open(str(archive), "r:*") as tar:
            entries = _Plan(archive, strip_single_root, max_total_bytes, max_members).scan(tar)
            with atomic_dir(dest) as tmp:
                for entry in entries:
                    _write(tar, entry, tmp, archive)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ArchiveError(
            f"Cannot read the archive {archive}: {exc}. It is truncated or not a tar archive; "
            f"delete it and fetch it again. {dest} was left as it was."
        ) from exc
    except OSError as exc:
        raise ArchiveError(f"Cannot extract {archive} into {dest}: {exc}. {dest} was left as it was.") from exc
    return dest


def check(archive: Path, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, max_members: int = DEFAULT_MAX_MEMBERS) -> None:
    """Every check :func:`extract` makes, writing nothing (trust on first use runs it before pinning)."""
    check_stream(archive, max_total_bytes=max_total_bytes, where="Nothing was extracted.")
    try:
        with tarfile.open(str(archive), "r:*") as tar:
            _Plan(archive, True, max_total_bytes, max_members).scan(tar)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ArchiveError(f"Cannot read the archive {archive}: {exc}. It is truncated or not a tar archive.") from exc


def check_stream(archive: Path, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, where: str = "") -> None:
    """Walk the decompressed tar stream's headers and read it to its end, before tarfile sees it.

    Refuses a header with a bad checksum, an extended header past MAX_EXTENDED_HEADER_BYTES
    (read in chunks, never allocated), malformed or too many PAX records, a stream that ends
    inside a member, and a compressed stream whose trailer (gzip: CRC32 and length) is wrong or cut.
    """
    try:
        with open(str(archive), "rb") as raw:
            magic = raw.read(6)
        opener = next((open_ for prefix, open_ in _DECOMPRESSORS.items() if magic.startswith(prefix)), None)
        with (opener(str(archive)) if opener else open(str(archive), "rb")) as stream:
            _HeaderWalk(archive, stream, max_total_bytes, where).run()
            while stream.read(COPY_CHUNK):
                pass  # the compressed stream's end: gzip checks its CRC32 and length trailer here
    except EOFError as exc:
        raise ArchiveError(f"The archive {archive} is truncated: its compressed stream ends early ({exc}). "
                           f"Delete it and fetch it again. {where}") from exc
    except (OSError, zlib.error, lzma.LZMAError) as exc:
        raise ArchiveError(f"The archive {archive} is corrupt: {exc}. Delete it and fetch it again. {where}") from exc


class _HeaderWalk:
    """Reads a tar stream header by header the way tarfile lays it out, checking each first."""

    def __init__(self, archive: Path, stream: io.BufferedIOBase, max_total_bytes: int, where: str):
        self.archive = archive
        self.stream = stream
        self.max_total_bytes = max_total_bytes
        self.where = where
        self.offset = 0

    def corrupt(self, what: str) -> ArchiveError:
        return ArchiveError(f"The archive {self.archive} is corrupt: {what} (at byte {self.offset} of the tar stream). "
                            f"Delete it and fetch it again. {self.where}")

    def refuse(self, member: str, reason: str, fix: str = _NOT_A_RELEASE) -> UnsafeArchiveError:
        return UnsafeArchiveError(archive=str(self.archive), member=member, reason=reason, fix=fix)

    def run(self) -> None:
        total = 0
        size_override: Optional[int] = None
        while True:
            header = self.stream.read(BLOCK)
            if not header or header == bytes(BLOCK):
                return  # the end (tarfile too stops at the first zero block)
            if len(header) < BLOCK:
                raise self.corrupt("the stream ends inside a member header")
            if not _checksum_ok(header):
                raise self.corrupt("a member header's checksum is wrong")
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            kind = header[156:157]
            size = _number(header[124:136])
            if size is None:
                raise self.corrupt(f"the header of '{name}' has an unreadable size field")
            self.offset += BLOCK
            if kind in _EXTENDED_HEADERS:
                label = _EXTENDED_HEADERS[kind]
                if size > MAX_EXTENDED_HEADER_BYTES:
                    raise self.refuse(name, f"is a {label} header of {size} bytes, past the bound of "
                                            f"{MAX_EXTENDED_HEADER_BYTES} bytes for extended headers")
                payload = self.read(size, name)
                if kind in (b"x", b"g", b"X"):
                    size_override = self.pax_size(payload, name)
                continue
            if kind == b"S":
                raise self.refuse(name, "is a GNU sparse file")
            if size_override is not None:
                size, size_override = size_override, None
            if kind in _NO_DATA:
                continue
            total += size
            if total > self.max_total_bytes:
                raise self.refuse(name, f"makes the archive expand past {self.max_total_bytes} bytes", fix=_RAISE_SIZE)
            self.skip(size, name)

    def read(self, size: int, name: str) -> bytes:
        data = self.stream.read(size)
        if len(data) < size:
            raise self.corrupt(f"the stream ends inside '{name}'")
        self.skip(0, name, padding=-size % BLOCK)
        self.offset += size
        return data

    def skip(self, size: int, name: str, *, padding: Optional[int] = None) -> None:
        """Read past ``size`` bytes and their padding to the next block, in chunks."""
        left = size + (-size % BLOCK if padding is None else padding)
        while left:
            got = len(self.stream.read(min(left, COPY_CHUNK)))
            if not got:
                raise self.corrupt(f"the stream ends inside '{name}'")
            left -= got
            self.offset += got

    def pax_size(self, payload: bytes, name: str) -> Optional[int]:
        """Check PAX records ("LENGTH KEY=VALUE\\n") in one linear pass; the size they set for the next member."""
        position, count, size = 0, 0, None
        while position < len(payload) and payload[position]:
            space = payload.find(b" ", position, position + len(str(MAX_EXTENDED_HEADER_BYTES)) + 1)
            digits = payload[position:space]
            if space < 0 or not digits.isdigit():
                raise self.refuse(name, "has a malformed PAX record (no decimal length)")
            end = position + int(digits)
            key, equals, value = payload[space + 1:end - 1].partition(b"=")
            if end > len(payload) or payload[end - 1:end] != b"\n" or not equals or not key:
                raise self.refuse(name, "has a malformed PAX record")
            count += 1
            if count > MAX_PAX_RECORDS:
                raise self.refuse(name, f"holds more than {MAX_PAX_RECORDS} PAX records")
            if key == b"size":
                if not value.isdigit():
                    raise self.refuse(name, f"has a PAX size that is not a number: {value[:20]!r}")
                size = int(value)
            position = end
        return size


def _number(field: bytes) -> Optional[int]:
    """A numeric header field as tarfile reads it: octal text, or GNU base-256; None if unreadable."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        return None  # negative
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        return None


def _checksum_ok(header: bytes) -> bool:
    """The header checksum, computed as tarfile does (unsigned, or signed as some old tars did)."""
    stored = _number(header[148:156])
    blanked = header[:148] + b" " * 8 + header[156:]
    return stored in (sum(blanked), sum(b - 256 if b > 127 else b for b in blanked))


class _Entry(NamedTuple):
    """A checked member: where it goes under ``dest`` and, for a hard link, what it links."""

    parts: Parts
    member: tarfile.TarInfo
    link: Parts = ()


class _Plan:
    """Reads every member header and decides, before anything is written, what to write."""

    def __init__(self, archive: Path, strip_single_root: bool, max_total_bytes: int, max_members: int):
        self.archive = archive
        self.strip_single_root = strip_single_root
        self.max_total_bytes = max_total_bytes
        self.max_members = max_members

    def refuse(self, member: str, reason: str, fix: str = _NOT_A_RELEASE) -> UnsafeArchiveError:
        return UnsafeArchiveError(archive=str(self.archive), member=member, reason=reason, fix=fix)

    def scan(self, tar: tarfile.TarFile) -> List[_Entry]:
        entries: List[_Entry] = []
        total = 0
        for count, member in enumerate(tar, start=1):
            if count > self.max_members:
                raise self.refuse(
                    member.name, f"makes the archive hold more than {self.max_members} members",
                    fix="If the archive is trusted, raise the member limit (max_members) and retry.",
                )
            if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                raise self.refuse(member.name, "is a device, fifo or other special file")
            if member.isreg():
                total += member.size
            if total > self.max_total_bytes:
                raise self.refuse(
                    member.name, f"makes the archive expand past {self.max_total_bytes} bytes",
                    fix=_RAISE_SIZE,
                )
            parts = self.clean(member.name, member.name)
            if not parts:
                if member.isdir():
                    continue  # "./" is the destination itself
                raise self.refuse(member.name, "has no file name")
            link = self.clean(member.linkname, member.name) if member.islnk() else ()
            entries.append(_Entry(parts, member, link))
        entries = self.strip(entries)
        self.check(entries)
        return entries

    def clean(self, name: str, member: str) -> Parts:
        """A member or hard-link name as path components; absolute or '..' names are refused."""
        if name.startswith("/"):
            raise self.refuse(member, f"has the absolute path '{name}'")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise self.refuse(member, f"has a '..' component in '{name}'")
        return parts

    def strip(self, entries: List[_Entry]) -> List[_Entry]:
        """Drop the one top-level directory every member shares, if there is one."""
        roots = {e.parts[:1] for e in entries}
        if not self.strip_single_root or len(roots) != 1:
            return entries
        (root,) = roots
        if any(e.parts == root and not e.member.isdir() for e in entries):
            return entries  # a lone file or link, not a directory to strip
        stripped = []
        for entry in entries:
            if entry.member.islnk() and entry.link[:1] != root:
                raise self.refuse(entry.member.name, f"hard-links to '{entry.member.linkname}', outside the top directory")
            if len(entry.parts) > 1:
                stripped.append(_Entry(entry.parts[1:], entry.member, entry.link[1:]))
        return stripped

    def check(self, entries: List[_Entry]) -> None:
        """Refuse repeated names, members under a symlink, and links leading outside."""
        symlinks: Dict[Parts, str] = {e.parts: e.member.linkname for e in entries if e.member.issym()}
        files = set()
        seen = set()
        for parts, member, link in entries:
            if parts in seen:
                raise self.refuse(member.name, "appears twice in the archive")
            seen.add(parts)
            for depth in range(1, len(parts)):
                if parts[:depth] in symlinks:
                    raise self.refuse(member.name, f"lies under the symlink '{'/'.join(parts[:depth])}'")
            if member.issym() and not _resolves_inside(parts[:-1], member.linkname, symlinks):
                raise self.refuse(member.name, f"is a symlink to '{member.linkname}', which leads outside the destination")
            if member.islnk() and link not in files:
                raise self.refuse(
                    member.name, f"hard-links to '{member.linkname}', which is not an earlier regular file of the archive"
                )
            if member.isreg():
                files.add(parts)


def _resolves_inside(start: Parts, target: str, symlinks: Dict[Parts, str]) -> bool:
    """Whether ``target``, read from directory ``start``, stays inside the root.

    Resolves like the kernel: component by component, replacing a component that is
    one of the archive's symlinks by its target, so '..' after a link is not fooled.
    """
    if target.startswith("/"):
        return False
    stack = list(start)
    todo: Deque[str] = collections.deque(target.split("/"))
    hops = 0
    while todo:
        part = todo.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return False
            stack.pop()
            continue
        stack.append(part)
        link: Optional[str] = symlinks.get(tuple(stack))
        if link is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or link.startswith("/"):
                return False
            stack.pop()
            todo.extendleft(reversed(link.split("/")))
    return True


def _write(tar: tarfile.TarFile, entry: _Entry, root: Path, archive: Path) -> None:
    """Write one checked member under ``root``; modes are normalised, owners ignored."""
    parts, member, link = entry
    path = root.joinpath(*parts)
    if member.isdir():
        path.mkdir(mode=0o755, parents=True, exist_ok=True)
        return
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if member.issym():
        os.symlink(member.linkname, str(path))
        return
    if member.islnk():
        os.link(str(root.joinpath(*link)), str(path))
        return
    stream = tar.extractfile(member)
    if stream is None:  # pragma: no cover - scan admits only regular files here
        raise ArchiveError(f"Cannot read member '{member.name}' of {archive}.")
    with stream, open(str(path), "xb") as out:
        shutil.copyfileobj(stream, out, COPY_CHUNK)
        written = out.tell()
    if written != member.size:
        raise ArchiveError(
            f"The archive {archive} ends inside member '{member.name}' ({written} of {member.size} bytes). "
            f"It is truncated: delete it and fetch it again."
        )
    os.chmod(str(path), 0o755 if member.mode & 0o111 else 0o644)
    os.utime(str(path), (member.mtime, member.mtime))
