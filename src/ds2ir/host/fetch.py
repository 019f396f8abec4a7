"""Download release assets into a verified cache, or take them from the user offline.

Every asset is pinned by URL in the lock file (``assets.lock.toml``: size and SHA-256).
A file is checked against its pin when it is downloaded, when it is imported and every
time it is taken from the cache; nothing unverified ever sits under a final name.
Downloads go to ``NAME.part`` beside the cache entry, resume with HTTP Range after an
interruption, retry with exponential backoff, and stop at a size bound or a stall (too
few bytes in a window). One fetch of an asset into a cache runs at a time (a lock file
per asset). An asset the lock knows no digest for is refused unless the caller trusts it
on first use, which records its size and digest (and where a redirect to another host
led) in the lock, an archive only once it passed extraction's checks.

``requests`` and ``tqdm`` are imported only when a download starts, so offline use and
imports work without them.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Dict, Iterator, NamedTuple, Optional, Tuple
from urllib.parse import urlparse

from ds2ir.atomic import atomic_path, write_bytes
from ds2ir.errors import (
    ArchiveError,
    ConfigError,
    FetchError,
    IntegrityError,
    MissingInputError,
    ModelFileError,
    NotCachedError,
    UnknownDigestError,
)
from ds2ir.host import archive
from ds2ir.host.project import ASSETS_LOCK_ENV
from ds2ir.model import pbmm
from ds2ir.paths import regular_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts
    import tomli as tomllib

if TYPE_CHECKING:  # pragma: no cover
    import requests

LOCK_FILE_NAME = "assets.lock.toml"
# DeepSpeech 0.8.2's checkpoint tarball is about 0.7 GB; anything past this is not it.
DEFAULT_MAX_BYTES = 2 * 1024 ** 3
CHUNK = 1024 * 1024
# urllib3 drops a partly read chunk when the body is cut off, so keep chunks small:
# a resumed download loses at most this much.
DOWNLOAD_CHUNK = 64 * 1024
MAX_BACKOFF_SECONDS = 60.0
# A download that brings fewer than STALL_MIN_BYTES in STALL_WINDOW_SECONDS is stalled: the
# per-read timeout never fires on a server that sends a byte now and then.
STALL_MIN_BYTES = 64 * 1024
STALL_WINDOW_SECONDS = 60.0
PART_SUFFIX = ".part"
IMPORT_HINT = "invoke fetch --import PATH"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARCHIVE_NAME = re.compile(r"\.(tar|tgz|tar\.(gz|bz2|xz))$")
# Statuses worth asking again for; any other failure status is final.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}

_LOCK_HEADER = """\
# Size and SHA-256 of every asset ds2ir downloads, by URL. Each downloaded, imported
# or cached file is verified against its entry every time it is used.
#   size = 0     unknown size
#   sha256 = ""  unknown digest: fetching it is refused unless run with
#                --trust-on-first-use, which records what was downloaded here.
# ds2ir rewrites this file sorted, keeping only this header as comment; review
# and commit its changes.
"""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The lock file


@dataclass(frozen=True)
class LockEntry:
    """What the lock pins for one URL; 0 and "" mean unknown. ``final_url``: where a redirect to
    another host led when the asset was trusted on first use (for the reviewer of the lock)."""

    size: int = 0
    sha256: str = ""
    final_url: str = ""


class Stall(NamedTuple):
    """The stall rule: an attempt that brings fewer than ``min_bytes`` in ``window`` seconds stops."""

    min_bytes: int = STALL_MIN_BYTES
    window: float = STALL_WINDOW_SECONDS


def read_lock(lock_path: Path) -> Dict[str, LockEntry]:
    """The lock's entries by URL; a missing lock file has none."""
    try:
        regular_file(lock_path, f"assets lock (${ASSETS_LOCK_ENV}, else the checkout's {LOCK_FILE_NAME})", error=ConfigError)
        text = lock_path.read_text(encoding="utf-8")
    except (FileNotFoundError, MissingInputError):
        return {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", file=str(lock_path)) from None
    extra = sorted(set(data) - {"assets"})
    if extra:
        raise ConfigError("unknown key; the lock holds only [assets.\"URL\"] tables", file=str(lock_path), key=extra[0])
    assets = data.get("assets", {})
    if not isinstance(assets, dict):
        raise ConfigError("must be a table of URLs", file=str(lock_path), key="assets")
    entries = {}
    for url, raw in assets.items():
        key = f'assets."{url}"'
        if not isinstance(raw, dict) or not {"size", "sha256"} <= set(raw) <= {"size", "sha256", "final_url"}:
            raise ConfigError("must be a table with 'size', 'sha256' and optionally 'final_url'", file=str(lock_path), key=key)
        size, digest, final_url = raw["size"], raw["sha256"], raw.get("final_url", "")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ConfigError(f"size must be an integer >= 0 (0 = unknown), got {size!r}", file=str(lock_path), key=key)
        if not isinstance(digest, str) or not (digest == "" or _SHA256.fullmatch(digest)):
            raise ConfigError(
                f"sha256 must be 64 lowercase hex digits or \"\" (unknown), got {digest!r}", file=str(lock_path), key=key
            )
        if not isinstance(final_url, str):
            raise ConfigError(f"final_url must be a string, got {final_url!r}", file=str(lock_path), key=key)
        entries[url] = LockEntry(size, digest, final_url)
    return entries


def write_lock(lock_path: Path, entries: Dict[str, LockEntry]) -> None:
    """Write the lock atomically in its one stable form: header, then URLs sorted."""
    blocks = [
        f"[assets.{_toml_string(url)}]\nsize = {entry.size}\nsha256 = {_toml_string(entry.sha256)}\n"
        + (f"final_url = {_toml_string(entry.final_url)}\n" if entry.final_url else "")
        for url, entry in sorted(entries.items())
    ]
    write_bytes(lock_path, (_LOCK_HEADER + "".join("\n" + block for block in blocks)).encode("utf-8"))


def _toml_string(value: str) -> str:
    """A TOML basic string."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _record(lock_path: Path, url: str, size: int, digest: str, final_url: str = "") -> None:
    """Trust on first use: pin ``url`` to what was just measured, and say so (and where it came from)."""
    entries = read_lock(lock_path)  # read again: keep any other change made meanwhile
    entries[url] = LockEntry(size, digest, final_url)
    write_lock(lock_path, entries)
    served = f", served by another host at {final_url} (recorded as final_url)" if final_url else ""
    _say(
        f"trust on first use: recorded {url} as {size} bytes, sha256 {digest}{served}, in {lock_path}. "
        f"Check the digest against a trusted source and commit the lock."
    )


# ---------------------------------------------------------------------------
# The cache


def asset_name(url: str) -> str:
    """The file name an asset is saved under: the URL's last path segment, made safe."""
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", PurePosixPath(urlparse(url).path).name)
    return name if name and not name.startswith(".") else "asset" + name


def cache_path(url: str, cache: Path) -> Path:
    """Where the cache keeps ``url``: a directory per URL, the file under its own name."""
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return cache / key / asset_name(url)


def measure(path: Path) -> Tuple[int, str]:
    """Size and SHA-256 of a file, read in chunks (archives run to gigabytes)."""
    digest = hashlib.sha256()
    size = 0
    with open(str(path), "rb") as stream:
        for block in iter(lambda: stream.read(CHUNK), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _discard(path: Path) -> None:
    """Remove a file, and its per-URL cache directory if that leaves it empty."""
    if path.exists():
        path.unlink()
    _remove_if_empty(path.parent)


def _remove_if_empty(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:  # not empty, or already gone
        pass


def _verify(path: Path, url: str, lock_path: Path, trust_on_first_use: bool, fix: str, served_from: str = "") -> None:
    """Check ``path`` against the lock's entry for ``url``; pin it if trusted on first use.

    ``served_from``: the URL a redirect to another host led to, recorded with the pin."""
    entry = read_lock(lock_path).get(url, LockEntry())
    size, digest = measure(path)
    if entry.size and size != entry.size:
        raise IntegrityError(file=str(path), url=url, check="size", expected=f"{entry.size} bytes",
                             actual=f"{size} bytes", fix=fix)
    if entry.sha256 and digest != entry.sha256:
        raise IntegrityError(file=str(path), url=url, check="sha256", expected=entry.sha256, actual=digest, fix=fix)
    if not entry.sha256:
        if not trust_on_first_use:
            raise _unknown_digest(url, lock_path)
        _check_before_pinning(path, url, lock_path)
        _record(lock_path, url, size, digest, served_from)


def _check_before_pinning(path: Path, url: str, lock_path: Path) -> None:
    """Trust on first use pins an archive, or a memory-mapped model, only when it passes every check its use makes."""
    name = asset_name(url)
    try:
        if _ARCHIVE_NAME.search(name):
            archive.check(path)
        elif name.endswith(".pbmm"):
            pbmm.check_file(path)
    except (ArchiveError, ModelFileError) as exc:
        what = "archive" if _ARCHIVE_NAME.search(name) else "memory-mapped model"
        raise FetchError(f"{url} is not a sound {what}, so trust on first use recorded nothing in {lock_path} "
                         f"and the file was not kept. {exc}") from exc


def _unknown_digest(url: str, lock_path: Path) -> UnknownDigestError:
    return UnknownDigestError(
        f"The lock file {lock_path} records no sha256 for {url}, so no copy of it can be verified. "
        f"Add its known sha256 (and size) to the lock, or run again with --trust-on-first-use to "
        f"record what is downloaded or imported (then check the digest and commit the lock)."
    )


# ---------------------------------------------------------------------------
# Public API


def fetch(
    url: str,
    *,
    lock_path: Path,
    cache: Path,
    offline: bool = False,
    trust_on_first_use: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool = True,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 1.0,
    stall: Stall = Stall(),
) -> Path:
    """The cached, verified copy of ``url``, downloading it first if needed.

    ``offline`` never touches the network: a missing asset raises :class:`NotCachedError`
    saying how to import it. ``retries`` bounds the extra attempts after the first,
    waiting ``backoff`` * 2**n seconds between them; ``timeout`` bounds each read and
    ``stall`` each attempt's throughput. Concurrent fetches of one asset into one cache
    take turns (a lock per asset).
    """
    final = cache_path(url, cache)
    cached = _cached(final, url, lock_path, trust_on_first_use, offline)
    if cached:
        return cached
    entry = read_lock(lock_path).get(url, LockEntry())
    if offline:
        expected = entry.sha256 or "unknown (the lock has none: import with --trust-on-first-use)"
        raise NotCachedError(
            f"Offline, and the cache {final.parent.parent} lacks {url} (file name {asset_name(url)}, "
            f"sha256 {expected}). Download that URL on a connected machine, bring the file to this host "
            f"and run '{IMPORT_HINT}' (add '--url {url}' if the file has another name); then retry."
        )
    if not entry.sha256 and not trust_on_first_use:
        raise _unknown_digest(url, lock_path)
    with _asset_lock(final, url):
        cached = _cached(final, url, lock_path, trust_on_first_use, offline)  # fetched while we waited?
        if cached:
            return cached
        bound = min(max_bytes, entry.size) if entry.size else max_bytes
        part = final.with_name(final.name + PART_SUFFIX)
        served_from = _download(url, part, bound=bound, progress=progress, retries=retries, timeout=timeout,
                                backoff=backoff, stall=stall)
        try:
            _verify(part, url, lock_path, trust_on_first_use, fix=(
                "The download was discarded. Run the fetch again; if it fails the same way, "
                "the asset changed upstream or the lock is wrong."
            ), served_from=served_from)
        except FetchError:
            _discard(part)
            raise
        os.replace(str(part), str(final))
    return final


def _cached(final: Path, url: str, lock_path: Path, trust_on_first_use: bool, offline: bool) -> Optional[Path]:
    """``final`` when the cache holds a good copy; a damaged one is removed (and reported offline)."""
    if not final.is_file():
        return None
    try:
        _verify(final, url, lock_path, trust_on_first_use, fix=(
            "The cached copy was removed; "
            + (f"bring a good copy with '{IMPORT_HINT}'." if offline else "it is downloaded again.")
        ))
        return final
    except IntegrityError as exc:
        _discard(final)
        if offline:
            raise
        _say(str(exc))
        return None
    except UnknownDigestError:
        raise
    except FetchError:  # a cached archive that fails its checks before trust on first use pins it
        _discard(final)
        raise


@contextlib.contextmanager
def _asset_lock(final: Path, url: str) -> Iterator[None]:
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
            _say(f"another process is fetching {url} into {final.parent}; waiting for it")
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
        _remove_if_empty(final.parent)


def import_file(
    path: Path,
    url: Optional[str] = None,
    *,
    lock_path: Path,
    cache: Path,
    trust_on_first_use: bool = False,
) -> Path:
    """Put a file the user brought (air-gapped hosts) into the cache, verified.

    Without ``url`` the asset is identified by the file's sha256, else by its name,
    among the lock's entries.
    """
    if not path.is_file():
        raise MissingInputError(f"Cannot import {path}: it is not a file. Pass the path of the downloaded asset.")
    if url is None:
        url = _identify(path, lock_path)
    if not read_lock(lock_path).get(url, LockEntry()).sha256 and not trust_on_first_use:
        raise _unknown_digest(url, lock_path)
    final = cache_path(url, cache)
    try:
        with atomic_path(final) as tmp:
            shutil.copyfile(str(path), str(tmp))
            _verify(tmp, url, lock_path, trust_on_first_use, fix=(
                f"Nothing was imported: {path} is not the file the lock expects. Download {url} again and import that."
            ))
    except (FetchError, OSError):
        _remove_if_empty(final.parent)
        raise
    _say(f"imported {path} as {url} into {final}")
    return final


def _identify(path: Path, lock_path: Path) -> str:
    entries = read_lock(lock_path)
    _, digest = measure(path)
    by_digest = [url for url, entry in entries.items() if entry.sha256 == digest]
    by_name = [url for url in entries if asset_name(url) == path.name]
    matches = by_digest or by_name
    if len(matches) != 1:
        raise FetchError(
            f"Cannot tell which asset {path} is: {len(matches)} entries of {lock_path} match its "
            f"sha256 or file name. Pass the URL it was downloaded from (--url URL)."
        )
    return matches[0]


# ---------------------------------------------------------------------------
# Downloading


class _Transient(Exception):
    """A failure worth another attempt (network error, 5xx, cut-off body)."""


def _download(url: str, part: Path, *, bound: int, progress: bool, retries: int, timeout: float, backoff: float,
              stall: Stall) -> str:
    """Complete ``part`` from ``url``, resuming what an earlier attempt left; return the URL that
    served it when a redirect led to another host, else ""."""
    import requests
    import urllib3

    fatal = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)
    attempt = 0
    with requests.Session() as session:
        while True:
            try:
                return _attempt(session, url, part, bound=bound, progress=progress, timeout=timeout, stall=stall)
            except fatal as exc:
                raise FetchError(f"Cannot download {url}: {exc}. Fix the URL in targets.toml and {LOCK_FILE_NAME}.") from None
            except (_Transient, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                if attempt >= retries:
                    raise FetchError(
                        f"Downloading {url} failed after {attempt + 1} attempts; last error: {exc}. "
                        f"Whatever arrived is kept in {part} and the next fetch resumes it. Check the network "
                        f"and retry, or on a host without access bring the file with '{IMPORT_HINT}'."
                    ) from None
                delay = min(backoff * 2 ** attempt, MAX_BACKOFF_SECONDS)
                attempt += 1
                _say(f"download of {url} failed ({exc}); retry {attempt} of {retries} in {delay:g} s")
                time.sleep(delay)


def _attempt(session: "requests.Session", url: str, part: Path, *, bound: int, progress: bool, timeout: float,
             stall: Stall) -> str:
    offset = part.stat().st_size if part.exists() else 0
    if offset > bound:
        part.unlink()
        offset = 0
    headers = {"Accept-Encoding": "identity"}  # the bytes as stored, so sizes and ranges agree
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
        status = response.status_code
        if status == 416 and offset:
            if _content_range_total(response.headers.get("Content-Range", "")) == offset:
                return _other_host(url, response.url)  # the part is already complete
            part.unlink()
            raise _Transient("the server refused to resume the partial download; restarting from zero")
        if status in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {status} {response.reason}")
        if status not in (200, 206):
            raise FetchError(
                f"{url} answered HTTP {status} {response.reason}. Check the URL in targets.toml and "
                f"{LOCK_FILE_NAME}; on a host that cannot reach it, bring the file with '{IMPORT_HINT}'."
            )
        total = _expected_total(response)
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range", ""))
            if start != offset:
                part.unlink()
                raise _Transient(f"the server resumed at byte {start}, not {offset}; restarting from zero")
            if offset:
                _say(f"resuming {part.name}: {offset} bytes already here, asking for the rest")
        elif offset:
            _say(f"the server ignored the range request for {url}; restarting from zero")
            offset = 0
        if total is not None and total > bound:
            _discard(part)
            raise _too_large(url, f"is {total} bytes", bound)
        served_from = _other_host(url, response.url)
        if served_from:
            _say(f"{url} redirected to another host: downloading {served_from}")
        part.parent.mkdir(parents=True, exist_ok=True)
        received = offset
        window_start, window_received = time.monotonic(), received
        with open(str(part), "ab" if offset else "wb") as out, _progress_bar(
            progress, part.name[: -len(PART_SUFFIX)], total, offset
        ) as bar:
            # read1 (urllib3 >= 2.2): whatever has arrived, so the stall rule applies while bytes trickle in
            for chunk in iter(lambda: response.raw.read1(DOWNLOAD_CHUNK), b""):
                received += len(chunk)
                if received > bound:
                    break
                out.write(chunk)
                bar.update(len(chunk))
                now = time.monotonic()
                if now - window_start >= stall.window:
                    if received - window_received < stall.min_bytes:
                        raise _Transient(
                            f"the download from {served_from or url} stalled: {received - window_received} bytes in "
                            f"the last {now - window_start:.1f} s, below the minimum of {stall.min_bytes} bytes per "
                            f"{stall.window:g} s ({received} bytes so far)")
                    window_start, window_received = now, received
            out.flush()
            os.fsync(out.fileno())
    if received > bound:
        _discard(part)
        raise _too_large(url, "kept sending", bound)
    if total is not None and received != total:
        raise _Transient(f"the connection closed after {received} of {total} bytes")
    return served_from


def _other_host(url: str, final_url: str) -> str:
    """``final_url`` when redirects led to another host than ``url``'s, else ""."""
    return final_url if urlparse(final_url).netloc != urlparse(url).netloc else ""


def _too_large(url: str, what: str, bound: int) -> FetchError:
    return FetchError(
        f"{url} {what}, past the bound of {bound} bytes (max_bytes, or the size in {LOCK_FILE_NAME}); "
        f"nothing was kept. If the asset really is that large, fix its lock entry or raise max_bytes."
    )


def _expected_total(response: "requests.Response") -> Optional[int]:
    """The whole asset's size, from Content-Range (206) or Content-Length (200)."""
    if response.status_code == 206:
        return _content_range_total(response.headers.get("Content-Range", ""))
    length = response.headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _content_range_start(value: str) -> Optional[int]:
    match = re.fullmatch(r"bytes (\d+)-\d+/(?:\d+|\*)", value.strip())
    return int(match.group(1)) if match else None


def _content_range_total(value: str) -> Optional[int]:
    match = re.fullmatch(r"bytes (?:\d+-\d+|\*)/(\d+)", value.strip())
    return int(match.group(1)) if match else None


class _NoBar:
    """Stands in for tqdm when no bar is shown."""

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def update(self, n: int) -> None:
        return None


def _progress_bar(wanted: bool, name: str, total: Optional[int], initial: int) -> Any:
    """A tqdm bar on stderr with size and rate, only when asked and stderr is a terminal."""
    if not (wanted and sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, dynamic_ncols=True)
