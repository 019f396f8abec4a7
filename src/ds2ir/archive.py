"""Extract downloaded tarballs without trusting them.

Every member is checked before a single byte is written: names must be relative and
free of ``..``, links must resolve inside the destination (following the archive's own
symlinks the way the filesystem will), devices and fifos are refused, and the member
count and expanded size are bounded. Extraction then goes into a temporary directory
beside the destination that is renamed into place, so a failure leaves the destination
as it was.
"""
from __future__ import annotations

import collections
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Deque, Dict, List, NamedTuple, Optional, Tuple

from ds2ir.atomic import atomic_dir
from ds2ir.errors import ArchiveError, UnsafeArchiveError

# Generous for DeepSpeech's checkpoint (~2 GB expanded) and source tree, tiny for a bomb.
DEFAULT_MAX_TOTAL_BYTES = 8 * 1024 ** 3
DEFAULT_MAX_MEMBERS = 100_000
# As many symlink hops as Linux follows before ELOOP.
MAX_LINK_HOPS = 40
COPY_CHUNK = 1024 * 1024

Parts = Tuple[str, ...]

_NOT_A_RELEASE = (
    "A release archive never holds such a member: the file is corrupt, tampered with or not "
    "the expected asset. Delete it and fetch it again (fetched files are checked against "
    "assets.lock.toml), or find out where it came from."
)


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
        ) from None
    except OSError as exc:
        raise ArchiveError(f"Cannot extract {archive} into {dest}: {exc}. {dest} was left as it was.") from None
    return dest


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
                    fix="If the archive is trusted, raise the size limit (max_total_bytes) and retry.",
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
