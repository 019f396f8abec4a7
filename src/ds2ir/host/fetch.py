"""Release assets into a verified cache, downloaded or brought by the user offline.

Every asset is pinned by URL in the assets lock (``assets_lock.py``: size and SHA-256).
A file is checked against its pin when it is downloaded, when it is imported and every
time it is taken from the cache; nothing unverified ever sits under a final name.
Downloads (``download.py``) go to ``NAME.part`` beside the cache entry (``asset_cache.py``);
one fetch of an asset into a cache runs at a time (a lock file per asset). An asset the
lock knows no digest for is refused unless the caller trusts it on first use, which
records its size and digest (and where a redirect to another host led) in the lock, an
archive only once it passed extraction's checks.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import List, Optional

from ds2ir.atomic import atomic_path
from ds2ir.errors import (
    ArchiveError,
    FetchError,
    IntegrityError,
    MissingInputError,
    ModelFileError,
    NotCachedError,
    UnknownDigestError,
)
from ds2ir.host import archive, digests
from ds2ir.host.asset_cache import IMPORT_HINT, PART_SUFFIX, asset_lock, asset_name, cache_path, discard, remove_if_empty
from ds2ir.host.assets_lock import LockEntry, read_lock, record, unknown_digest
from ds2ir.host.download import Stall, download
from ds2ir.model import pbmm
from ds2ir.model.targets import Target

# DeepSpeech 0.8.2's checkpoint tarball is about 0.7 GB; anything past this is not it.
DEFAULT_MAX_BYTES = 2 * 1024 ** 3
_ARCHIVE_NAME = re.compile(r"\.(tar|tgz|tar\.(gz|bz2|xz))$")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def release_assets(target: Target, *, source: bool = False) -> List[str]:
    """The URLs of the release files ``target`` builds from (its checkpoint, or its .pbmm), and with
    ``source`` the release's source archive: what `invoke fetch` brings into the cache."""
    weights = target.release.model_url if target.checkpoint == "pbmm" else target.release.checkpoint_url
    return [url for url in (weights, target.release.source_url if source else None) if url]


def _verify(path: Path, url: str, lock_path: Path, trust_on_first_use: bool, fix: str, served_from: str = "") -> None:
    """Check ``path`` against the lock's entry for ``url``; pin it if trusted on first use.

    ``served_from``: the URL a redirect to another host led to, recorded with the pin."""
    entry = read_lock(lock_path).get(url, LockEntry())
    size, digest = digests.measure(path)
    if entry.size and size != entry.size:
        raise IntegrityError(file=str(path), url=url, check="size", expected=f"{entry.size} bytes",
                             actual=f"{size} bytes", fix=fix)
    if entry.sha256 and digest != entry.sha256:
        raise IntegrityError(file=str(path), url=url, check="sha256", expected=entry.sha256, actual=digest, fix=fix)
    if not entry.sha256:
        if not trust_on_first_use:
            raise unknown_digest(url, lock_path)
        _check_before_pinning(path, url, lock_path)
        record(lock_path, url, size, digest, served_from)


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
        raise unknown_digest(url, lock_path)
    with asset_lock(final, url):
        cached = _cached(final, url, lock_path, trust_on_first_use, offline)  # fetched while we waited?
        if cached:
            return cached
        bound = min(max_bytes, entry.size) if entry.size else max_bytes
        part = final.with_name(final.name + PART_SUFFIX)
        served_from = download(url, part, bound=bound, progress=progress, retries=retries, timeout=timeout,
                                backoff=backoff, stall=stall)
        try:
            _verify(part, url, lock_path, trust_on_first_use, fix=(
                "The download was discarded. Run the fetch again; if it fails the same way, "
                "the asset changed upstream or the lock is wrong."
            ), served_from=served_from)
        except FetchError:
            discard(part)
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
        discard(final)
        if offline:
            raise
        _say(str(exc))
        return None
    except UnknownDigestError:
        raise
    except FetchError:  # a cached archive that fails its checks before trust on first use pins it
        discard(final)
        raise


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
        raise unknown_digest(url, lock_path)
    final = cache_path(url, cache)
    try:
        with atomic_path(final) as tmp:
            shutil.copyfile(str(path), str(tmp))
            _verify(tmp, url, lock_path, trust_on_first_use, fix=(
                f"Nothing was imported: {path} is not the file the lock expects. Download {url} again and import that."
            ))
    except (FetchError, OSError):
        remove_if_empty(final.parent)
        raise
    _say(f"imported {path} as {url} into {final}")
    return final


def _identify(path: Path, lock_path: Path) -> str:
    entries = read_lock(lock_path)
    _, digest = digests.measure(path)
    by_digest = [url for url, entry in entries.items() if entry.sha256 == digest]
    by_name = [url for url in entries if asset_name(url) == path.name]
    matches = by_digest or by_name
    if len(matches) != 1:
        raise FetchError(
            f"Cannot tell which asset {path} is: {len(matches)} entries of {lock_path} match its "
            f"sha256 or file name. Pass the URL it was downloaded from (--url URL)."
        )
    return matches[0]
