"""The assets lock (``assets.lock.toml``): size and SHA-256 of every asset ds2ir downloads, by URL.

Read strictly (every error names the file and the key), written atomically in one stable form
(header, URLs sorted), and extended only by trust on first use, which says what it recorded.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from ds2ir.atomic import write_bytes
from ds2ir.errors import ConfigError, MissingInputError, UnknownDigestError
from ds2ir.paths import regular_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older hosts
    import tomli as tomllib

LOCK_FILE_NAME = "assets.lock.toml"
#: the environment variable that points the tasks at another assets lock (host/project.py)
ASSETS_LOCK_ENV = "DS2IR_ASSETS_LOCK"
_SHA256 = re.compile(r"[0-9a-f]{64}")

_LOCK_HEADER = """\
# Size and SHA-256 of every asset ds2ir downloads, by URL. Each downloaded, imported
# or cached file is verified against its entry every time it is used.
#   size = 0     unknown size
#   sha256 = ""  unknown digest: fetching it is refused unless run with
#                --trust-on-first-use, which records what was downloaded here.
# ds2ir rewrites this file sorted, keeping only this header as comment; review
# and commit its changes.
"""


@dataclass(frozen=True)
class LockEntry:
    """What the lock pins for one URL; 0 and "" mean unknown. ``final_url``: where a redirect to
    another host led when the asset was trusted on first use (for the reviewer of the lock)."""

    size: int = 0
    sha256: str = ""
    final_url: str = ""


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
        raise ConfigError(f"not valid TOML: {exc}", file=str(lock_path)) from exc
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


def record(lock_path: Path, url: str, size: int, digest: str, final_url: str = "") -> None:
    """Trust on first use: pin ``url`` to what was just measured, and say so (and where it came from)."""
    entries = read_lock(lock_path)  # read again: keep any other change made meanwhile
    entries[url] = LockEntry(size, digest, final_url)
    write_lock(lock_path, entries)
    served = f", served by another host at {final_url} (recorded as final_url)" if final_url else ""
    print(
        f"trust on first use: recorded {url} as {size} bytes, sha256 {digest}{served}, in {lock_path}. "
        f"Check the digest against a trusted source and commit the lock.", file=sys.stderr, flush=True
    )


def unknown_digest(url: str, lock_path: Path) -> UnknownDigestError:
    return UnknownDigestError(
        f"The lock file {lock_path} records no sha256 for {url}, so no copy of it can be verified. "
        f"Add its known sha256 (and size) to the lock, or run again with --trust-on-first-use to "
        f"record what is downloaded or imported (then check the digest and commit the lock)."
    )
