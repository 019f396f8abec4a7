"""ds2ir.host.fetch against a loopback server: verified cache, resume, retries, bounds, offline."""
from __future__ import annotations

import contextlib
import hashlib
import re
import sys
import threading
from pathlib import Path
from typing import Any, Dict

import pytest

from ds2ir.errors import (
    ConfigError,
    FetchError,
    IntegrityError,
    MissingInputError,
    NotCachedError,
    UnknownDigestError,
)
from ds2ir.host import download
from ds2ir.host import fetch as fetch_module
from ds2ir.host.asset_cache import PART_SUFFIX, asset_name, cache_path
from ds2ir.host.assets_lock import LockEntry, read_lock, write_lock
from ds2ir.host.fetch import fetch, import_file
from tests._support.http_server import AssetServer, asset_server  # noqa: F401 - the fixture
from tests._support.tarballs import release_tarball, tarball_bytes

PATH = "/mozilla/DeepSpeech/releases/download/v0.8.2/deepspeech-0.8.2-checkpoint.tar.gz"
# A real .tar.gz (stored, not compressed: about 330,000 bytes, deterministic), since trust on
# first use pins an archive only once it passes extraction's checks.
BODY = tarball_bytes({"data": hashlib.sha256(b"seed").digest() * 10000})
OTHER_URL = "https://example.invalid/other.tar.gz"
OTHER = LockEntry(size=3, sha256="a" * 64)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def snapshot(directory: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else b"<dir>"
            for p in sorted(directory.rglob("*"))}


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return tmp_path / "assets.lock.toml"


def pin(lock: Path, url: str, body: bytes = BODY, *, known: bool = True) -> None:
    entries = read_lock(lock)
    entries[url] = LockEntry(len(body), sha(body)) if known else LockEntry()
    entries.setdefault(OTHER_URL, OTHER)
    write_lock(lock, entries)


def get(url: str, lock: Path, cache: Path, **kwargs: Any) -> Path:
    options: Dict[str, Any] = {"retries": 2, "backoff": 0, "timeout": 5, "progress": False}
    options.update(kwargs)
    return fetch(url, lock_path=lock, cache=cache, **options)


# -- success paths -----------------------------------------------------------


def test_fetch_downloads_verifies_and_serves_from_cache(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    url = asset_server.add(PATH, BODY)
    pin(lock, url)
    path = get(url, lock, cache)
    assert path == cache_path(url, cache) and path.name == "deepspeech-0.8.2-checkpoint.tar.gz"
    assert path.read_bytes() == BODY
    assert list(path.parent.iterdir()) == [path]  # no .part left behind
    headers = asset_server.requests_for(PATH)
    assert len(headers) == 1 and "range" not in headers[0]
    assert get(url, lock, cache) == path
    assert len(asset_server.requests_for(PATH)) == 1  # second use came from the cache


def test_resume_after_the_connection_drops_halfway(
    asset_server: AssetServer, cache: Path, lock: Path, capsys: pytest.CaptureFixture
) -> None:
    url = asset_server.add(PATH, BODY, drop_after=len(BODY) // 2)
    pin(lock, url)
    assert get(url, lock, cache).read_bytes() == BODY
    first, second = asset_server.requests_for(PATH)
    assert "range" not in first
    err = capsys.readouterr().err
    assert "retry 1 of 2" in err
    resumed = int(re.search(r"resuming deepspeech-0.8.2-checkpoint.tar.gz.part: (\d+) bytes", err).group(1))
    # Everything up to the last whole chunk before the cut was kept and not asked for again.
    assert len(BODY) // 2 - download.DOWNLOAD_CHUNK < resumed <= len(BODY) // 2
    assert second["range"] == f"bytes={resumed}-"


def test_server_ignoring_range_restarts_from_zero(
    asset_server: AssetServer, cache: Path, lock: Path, capsys: pytest.CaptureFixture
) -> None:
    url = asset_server.add(PATH, BODY, ignore_range=True)
    pin(lock, url)
    part = cache_path(url, cache).with_name("deepspeech-0.8.2-checkpoint.tar.gz.part")
    part.parent.mkdir()
    part.write_bytes(b"garbage from an older download")
    assert get(url, lock, cache).read_bytes() == BODY
    assert asset_server.requests_for(PATH)[0]["range"] == f"bytes={len(b'garbage from an older download')}-"
    assert "ignored the range request" in capsys.readouterr().err
    assert not part.exists()


def test_complete_part_left_by_a_crash_is_verified_and_used(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    url = asset_server.add(PATH, BODY)
    pin(lock, url)
    part = cache_path(url, cache).with_name("deepspeech-0.8.2-checkpoint.tar.gz.part")
    part.parent.mkdir()
    part.write_bytes(BODY)  # the server answers 416: nothing left to send
    assert get(url, lock, cache).read_bytes() == BODY
    assert not part.exists()


def test_fetched_tarball_extracts(asset_server: AssetServer, cache: Path, lock: Path, tmp_path: Path) -> None:
    from ds2ir.host.archive import extract

    body = release_tarball(tmp_path / "release.tar.gz").read_bytes()
    url = asset_server.add(PATH, body)
    pin(lock, url, body)
    dest = extract(get(url, lock, cache), tmp_path / "checkpoint")
    assert (dest / "flags.txt").read_bytes() == b"--n_hidden=2048\n"


# -- bad downloads leave the cache as it was -----------------------------------


@pytest.mark.parametrize("served, check", [
    (BODY[: len(BODY) // 2], "size"),                    # truncated, with a matching Content-Length
    (bytes(len(BODY)), "sha256"),                         # right size, wrong content
], ids=["truncated", "wrong-digest"])
def test_wrong_content_is_refused_and_discarded(
    asset_server: AssetServer, cache: Path, lock: Path, served: bytes, check: str
) -> None:
    url = asset_server.add(PATH, BODY, served_body=served)
    pin(lock, url)
    with pytest.raises(IntegrityError) as raised:
        get(url, lock, cache, trust_on_first_use=True)  # never overrides a known pin
    error = raised.value
    assert error.check == check and error.url == url
    expected, actual = {"size": (f"{len(BODY)} bytes", f"{len(served)} bytes"), "sha256": (sha(BODY), sha(served))}[check]
    assert (error.expected, error.actual) == (expected, actual)
    assert "discarded" in str(error)
    assert snapshot(cache) == {}


def test_stale_part_with_wrong_bytes_fails_once_then_succeeds(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    url = asset_server.add(PATH, BODY)
    pin(lock, url)
    part = cache_path(url, cache).with_name("deepspeech-0.8.2-checkpoint.tar.gz.part")
    part.parent.mkdir()
    part.write_bytes(b"X" * 1000)
    with pytest.raises(IntegrityError):
        get(url, lock, cache)
    assert snapshot(cache) == {}
    assert get(url, lock, cache).read_bytes() == BODY


def test_http_errors(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    missing = asset_server.url("/missing.tar.gz")
    pin(lock, missing)
    with pytest.raises(FetchError, match="HTTP 404"):
        get(missing, lock, cache)
    assert len(asset_server.requests_for("/missing.tar.gz")) == 1  # not retried

    url = asset_server.add("/flaky.tar.gz", BODY, status=500)
    pin(lock, url)
    with pytest.raises(FetchError, match="failed after 3 attempts") as raised:
        get(url, lock, cache)
    assert "HTTP 500" in str(raised.value)
    assert len(asset_server.requests_for("/flaky.tar.gz")) == 3
    assert snapshot(cache) == {}


def test_connection_refused_is_retried_then_reported(cache: Path, lock: Path) -> None:
    with AssetServer() as server:
        url = server.url(PATH)
    pin(lock, url)  # the server is gone: nothing listens on its port any more
    with pytest.raises(FetchError, match="failed after 2 attempts"):
        get(url, lock, cache, retries=1)
    assert snapshot(cache) == {}


@pytest.mark.parametrize("faults", [{}, {"send_length": False}], ids=["content-length", "no-content-length"])
def test_size_bound(asset_server: AssetServer, cache: Path, lock: Path, faults: Dict[str, Any]) -> None:
    url = asset_server.add(PATH, BODY, **faults)
    pin(lock, url)
    with pytest.raises(FetchError, match="past the bound of 1000 bytes") as raised:
        get(url, lock, cache, max_bytes=1000)
    assert "max_bytes" in str(raised.value)
    assert snapshot(cache) == {}


def test_size_in_the_lock_bounds_the_download(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    url = asset_server.add(PATH, BODY + b"more")
    pin(lock, url)
    with pytest.raises(FetchError, match=f"past the bound of {len(BODY)} bytes"):
        get(url, lock, cache)
    assert snapshot(cache) == {}


# -- the cache is verified on every use ------------------------------------------


def test_corrupt_cache_entry_is_removed_and_fetched_again(
    asset_server: AssetServer, cache: Path, lock: Path, capsys: pytest.CaptureFixture
) -> None:
    url = asset_server.add(PATH, BODY)
    pin(lock, url)
    path = get(url, lock, cache)
    path.write_bytes(b"bit rot" + BODY[7:])
    assert get(url, lock, cache).read_bytes() == BODY
    assert "removed" in capsys.readouterr().err
    assert len(asset_server.requests_for(PATH)) == 2


def test_corrupt_cache_entry_offline_is_reported_and_removed(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    url = asset_server.add(PATH, BODY)
    pin(lock, url)
    path = get(url, lock, cache)
    path.write_bytes(BODY[:-1])
    with pytest.raises(IntegrityError, match="invoke fetch --import PATH") as raised:
        get(url, lock, cache, offline=True)
    assert str(path) in str(raised.value) and raised.value.check == "size"
    assert not path.exists()
    assert len(asset_server.requests_for(PATH)) == 1


# -- unknown digests and trust on first use -------------------------------------


def test_unknown_digest_is_refused_without_trust_on_first_use(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    url = asset_server.add(PATH, BODY)
    pin(lock, url, known=False)
    before = lock.read_bytes()
    with pytest.raises(UnknownDigestError, match="--trust-on-first-use") as raised:
        get(url, lock, cache)
    assert url in str(raised.value) and str(lock) in str(raised.value)
    assert asset_server.requests_for(PATH) == []  # refused before downloading anything
    assert lock.read_bytes() == before and snapshot(cache) == {}


def test_trust_on_first_use_records_the_asset_in_the_lock(
    asset_server: AssetServer, cache: Path, lock: Path, capsys: pytest.CaptureFixture
) -> None:
    url = asset_server.add(PATH, BODY)
    pin(lock, url, known=False)
    path = get(url, lock, cache, trust_on_first_use=True)
    assert path.read_bytes() == BODY
    assert read_lock(lock) == {url: LockEntry(len(BODY), sha(BODY)), OTHER_URL: OTHER}
    text = lock.read_text()
    assert text.index(f'[assets."{url}"]') < text.index(f'[assets."{OTHER_URL}"]')  # sorted
    assert f'size = {len(BODY)}\nsha256 = "{sha(BODY)}"\n' in text
    assert "trust on first use: recorded" in capsys.readouterr().err
    assert get(url, lock, cache) == path  # now pinned: no flag needed


def test_a_url_absent_from_the_lock_is_unknown(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    url = asset_server.add(PATH, BODY)
    with pytest.raises(UnknownDigestError):
        get(url, lock, cache)
    get(url, lock, cache, trust_on_first_use=True)
    assert read_lock(lock)[url].sha256 == sha(BODY)


# -- offline and import -----------------------------------------------------------


def test_offline_names_the_missing_file_and_how_to_bring_it(cache: Path, lock: Path) -> None:
    url = "https://github.com" + PATH
    pin(lock, url)
    with pytest.raises(NotCachedError) as raised:
        get(url, lock, cache, offline=True)
    message = str(raised.value)
    for needed in (url, "deepspeech-0.8.2-checkpoint.tar.gz", sha(BODY), "invoke fetch --import PATH"):
        assert needed in message
    assert snapshot(cache) == {}


def test_import_file_then_offline_fetch(cache: Path, lock: Path, tmp_path: Path) -> None:
    url = "https://github.com" + PATH
    pin(lock, url)
    brought = tmp_path / "downloads" / "deepspeech-0.8.2-checkpoint.tar.gz"
    brought.parent.mkdir()
    brought.write_bytes(BODY)
    path = import_file(brought, url, lock_path=lock, cache=cache)
    assert path == cache_path(url, cache) and path.read_bytes() == BODY
    assert fetch(url, lock_path=lock, cache=cache, offline=True) == path
    # Importing again (even a file of another name, found by its digest) replaces it in place.
    renamed = brought.rename(brought.with_name("ckpt.tgz"))
    assert import_file(renamed, lock_path=lock, cache=cache) == path


def test_import_refuses_a_wrong_file_and_keeps_the_cache(cache: Path, lock: Path, tmp_path: Path) -> None:
    url = "https://github.com" + PATH
    pin(lock, url)
    wrong = tmp_path / "deepspeech-0.8.2-checkpoint.tar.gz"
    wrong.write_bytes(BODY[:-1] + b"!")
    with pytest.raises(IntegrityError, match="Nothing was imported"):
        import_file(wrong, url, lock_path=lock, cache=cache)
    assert snapshot(cache) == {}
    good = tmp_path / "good.tar.gz"
    good.write_bytes(BODY)
    path = import_file(good, url, lock_path=lock, cache=cache)
    with pytest.raises(IntegrityError):
        import_file(wrong, url, lock_path=lock, cache=cache)
    assert path.read_bytes() == BODY  # a failed import never touches a good entry
    with pytest.raises(MissingInputError):
        import_file(tmp_path / "nope", url, lock_path=lock, cache=cache)


def test_import_with_unknown_digest_needs_trust_on_first_use(cache: Path, lock: Path, tmp_path: Path) -> None:
    url = "https://github.com" + PATH
    pin(lock, url, known=False)
    brought = tmp_path / "deepspeech-0.8.2-checkpoint.tar.gz"
    brought.write_bytes(BODY)
    with pytest.raises(UnknownDigestError):
        import_file(brought, lock_path=lock, cache=cache)  # identified by its name
    assert snapshot(cache) == {}
    import_file(brought, lock_path=lock, cache=cache, trust_on_first_use=True)
    assert read_lock(lock)[url] == LockEntry(len(BODY), sha(BODY))
    unknown = tmp_path / "mystery.bin"
    unknown.write_bytes(b"?")
    with pytest.raises(FetchError, match="--url URL"):
        import_file(unknown, lock_path=lock, cache=cache)


# -- the lock file, the cache location, the progress bar ------------------------------


def test_lock_round_trip_and_validation(lock: Path) -> None:
    odd = 'https://example.invalid/a "quoted"\\name.tar.gz'
    entries = {odd: LockEntry(5, "b" * 64), OTHER_URL: OTHER}
    write_lock(lock, entries)
    first = lock.read_bytes()
    assert read_lock(lock) == entries
    write_lock(lock, dict(reversed(list(entries.items()))))
    assert lock.read_bytes() == first  # stable, whatever the order in memory
    for bad in ('[assets."u"]\nsize = -1\nsha256 = ""\n', '[assets."u"]\nsize = 1\nsha256 = "xyz"\n',
                '[assets."u"]\nsize = 1\n', "[other]\n", "not toml ["):
        lock.write_text(bad)
        with pytest.raises(ConfigError, match=str(lock)):
            read_lock(lock)
    assert read_lock(lock.with_name("absent.toml")) == {}


def test_repository_lock_lists_the_release_assets() -> None:
    entries = read_lock(Path(__file__).resolve().parents[2] / "assets.lock.toml")
    assert "https://github.com/mozilla/DeepSpeech/releases/download/v0.8.2/deepspeech-0.8.2-checkpoint.tar.gz" in entries
    assert "https://github.com/mozilla/DeepSpeech/archive/v0.8.2.tar.gz" in entries


def test_asset_names_are_safe() -> None:
    assert asset_name("https://github.com/mozilla/DeepSpeech/archive/v0.8.2.tar.gz") == "v0.8.2.tar.gz"
    assert asset_name("https://x.invalid/") == "asset"
    assert asset_name("https://x.invalid/..") == "asset.."
    assert asset_name("https://x.invalid/a%2F..%2Fb?q=1") == "a_2F.._2Fb"


def test_progress_bar_shows_size_and_rate(
    asset_server: AssetServer, cache: Path, lock: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("tqdm")
    url = asset_server.add(PATH, BODY)
    pin(lock, url)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    get(url, lock, cache, progress=True)
    err = capsys.readouterr().err
    assert "deepspeech-0.8.2-checkpoint.tar.gz" in err and "320k/320k" in err and "B/s" in err
    assert fetch_module.DEFAULT_MAX_BYTES > 700 * 1024 ** 2  # room for the real checkpoint


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_an_assets_lock_that_is_not_a_file_is_a_clear_error(tmp_path: Path, kind: str) -> None:
    from tests._support.fifo import fifo
    from tests.e2e.helpers import invoke

    lock = tmp_path / "lock"
    with contextlib.ExitStack() as stack:
        if kind == "directory":
            lock.mkdir()
        else:
            stack.enter_context(fifo(lock))
        result = invoke("fetch", "--target", "deepspeech-0.8.2", "--offline", env={"DS2IR_ASSETS_LOCK": str(lock)}, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout
    what = "a directory" if kind == "directory" else "a FIFO (named pipe)"
    assert f"ds2ir: error: The assets lock ($DS2IR_ASSETS_LOCK, else the checkout's assets.lock.toml) {lock} is {what}" in result.stdout


def test_trust_on_first_use_pins_no_archive_that_fails_extraction_checks(
    asset_server: AssetServer, cache: Path, lock: Path
) -> None:
    damaged = bytearray(BODY)
    damaged[-6] ^= 0x01  # one bit of the gzip CRC32: every byte of the tar inside is intact
    url = asset_server.add(PATH, bytes(damaged))
    pin(lock, url, known=False)
    before = lock.read_bytes()
    with pytest.raises(FetchError, match="recorded nothing") as raised:
        get(url, lock, cache, trust_on_first_use=True)
    assert "CRC check failed" in str(raised.value)
    assert lock.read_bytes() == before and snapshot(cache) == {}


def test_trust_on_first_use_pins_a_memory_mapped_model_only_when_it_passes_its_checks(
    asset_server: AssetServer, cache: Path, lock: Path
) -> None:
    from ds2ir.model import pbmm

    graph = b"\x0a\x04\x12\x02op"  # a GraphDef-shaped file: a .pb where the .pbmm should be
    bad = asset_server.add("/release/bad.pbmm", graph)
    pin(lock, bad, known=False)
    before = lock.read_bytes()
    with pytest.raises(FetchError, match="is not a sound memory-mapped model, so trust on first use recorded nothing"):
        get(bad, lock, cache, trust_on_first_use=True)
    assert lock.read_bytes() == before and snapshot(cache) == {}
    good = asset_server.add("/release/good.pbmm", pbmm.pack(graph, "test graph"))
    pin(lock, good, known=False)
    get(good, lock, cache, trust_on_first_use=True)
    assert read_lock(lock)[good].sha256


def test_two_fetches_of_one_asset_into_one_cache_at_once_both_succeed(
    asset_server: AssetServer, cache: Path, lock: Path
) -> None:
    url = asset_server.add(PATH, BODY, trickle=64 * 1024)  # about 0.3 s: the two overlap
    pin(lock, url)
    start = threading.Barrier(2)
    results: Dict[int, object] = {}

    def fetch_one(index: int) -> None:
        start.wait()
        try:
            results[index] = get(url, lock, cache).read_bytes()
        except Exception as exc:  # reported by the assertion below
            results[index] = exc

    threads = [threading.Thread(target=fetch_one, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == {0: BODY, 1: BODY}
    assert len(asset_server.requests_for(PATH)) == 1  # the second found it cached
    assert sorted(snapshot(cache)) == [cache_path(url, cache).parent.name, str(cache_path(url, cache).relative_to(cache))]


def test_a_download_that_trickles_is_stopped_by_the_stall_rule(asset_server: AssetServer, cache: Path, lock: Path) -> None:
    body = b"s" * 100
    url = asset_server.add("/slow.bin", body, trickle=1, trickle_delay=0.4)  # would take 40 s
    pin(lock, url, body)
    with pytest.raises(FetchError, match="stalled") as raised:
        get(url, lock, cache, retries=0, stall=download.Stall(min_bytes=50, window=1.5))
    part = cache_path(url, cache).with_name("slow.bin" + PART_SUFFIX)
    message = str(raised.value)
    assert re.search(r"stalled: \d bytes in the last 1\.\d s, below the minimum of 50 bytes per 1\.5 s", message)
    assert f"kept in {part} and the next fetch resumes it" in message
    assert 0 < part.stat().st_size < len(body)


def test_trust_on_first_use_after_a_redirect_to_another_host_names_and_records_it(
    asset_server: AssetServer, cache: Path, lock: Path, capsys: pytest.CaptureFixture
) -> None:
    elsewhere = asset_server.add("/elsewhere.tar.gz", BODY).replace("127.0.0.1", "localhost")
    url = asset_server.add(PATH, b"", redirect=elsewhere)
    pin(lock, url, known=False)
    assert get(url, lock, cache, trust_on_first_use=True).read_bytes() == BODY
    assert read_lock(lock)[url] == LockEntry(len(BODY), sha(BODY), final_url=elsewhere)
    assert f'final_url = "{elsewhere}"' in lock.read_text()
    err = capsys.readouterr().err
    assert f"redirected to another host: downloading {elsewhere}" in err
    assert f"served by another host at {elsewhere}" in err
    assert get(url, lock, cache) == cache_path(url, cache)  # the pin, with its final_url, reads back
