"""Downloading one asset into ``NAME.part``: resumed with HTTP Range after an interruption, retried
with exponential backoff, stopped at a size bound or a stall (too few bytes in a window).

``requests`` and ``tqdm`` are imported only when a download starts, so offline use and imports work
without them.
"""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Optional
from urllib.parse import urlparse

from ds2ir.errors import FetchError
from ds2ir.host.asset_cache import IMPORT_HINT, PART_SUFFIX, discard
from ds2ir.host.assets_lock import LOCK_FILE_NAME

if TYPE_CHECKING:  # pragma: no cover
    import requests

# urllib3 drops a partly read chunk when the body is cut off, so keep chunks small:
# a resumed download loses at most this much.
DOWNLOAD_CHUNK = 64 * 1024
MAX_BACKOFF_SECONDS = 60.0
# A download that brings fewer than STALL_MIN_BYTES in STALL_WINDOW_SECONDS is stalled: the
# per-read timeout never fires on a server that sends a byte now and then.
STALL_MIN_BYTES = 64 * 1024
STALL_WINDOW_SECONDS = 60.0
# Statuses worth asking again for; any other failure status is final.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Stall(NamedTuple):
    """The stall rule: an attempt that brings fewer than ``min_bytes`` in ``window`` seconds stops."""

    min_bytes: int = STALL_MIN_BYTES
    window: float = STALL_WINDOW_SECONDS


class _Transient(Exception):
    """A failure worth another attempt (network error, 5xx, cut-off body)."""


def download(url: str, part: Path, *, bound: int, progress: bool, retries: int, timeout: float, backoff: float,
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
                raise FetchError(f"Cannot download {url}: {exc}. Fix the URL in targets.toml and {LOCK_FILE_NAME}.") from exc
            except (_Transient, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                if attempt >= retries:
                    raise FetchError(
                        f"Downloading {url} failed after {attempt + 1} attempts; last error: {exc}. "
                        f"Whatever arrived is kept in {part} and the next fetch resumes it. Check the network "
                        f"and retry, or on a host without access bring the file with '{IMPORT_HINT}'."
                    ) from exc
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
            discard(part)
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
        discard(part)
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
