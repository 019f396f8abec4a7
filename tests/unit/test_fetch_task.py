"""`invoke fetch` as a user runs it: download and verify a release's assets, offline from the cache, --import."""
from __future__ import annotations

from pathlib import Path
from typing import List

from tests._support.http_server import asset_server  # noqa: F401  (pytest fixture)
from tests._support.tarballs import release_tarball, tarball_bytes
from tests.e2e.helpers import invoke, pinned_assets_environment, served_release_targets

ASSET = "/releases/v0.0-test/deepspeech-test-checkpoint.tar.gz"


def printed_paths(output: str) -> List[Path]:
    """The cache paths the task printed (progress lines are not paths)."""
    return [Path(line) for line in output.splitlines() if line.startswith("/") and Path(line).is_file()]


def test_fetch_downloads_the_checkpoint_and_source_then_serves_them_offline(tmp_path, asset_server):  # noqa: F811
    checkpoint = release_tarball(tmp_path / "release.tar.gz").read_bytes()
    source = tarball_bytes({"DeepSpeech.py": b"# the exporter\n"}, root="DeepSpeech-0.0")
    url, source_url = asset_server.add(ASSET, checkpoint), asset_server.add(ASSET + ".source", source)
    env = pinned_assets_environment(tmp_path, served_release_targets("fetched", "release", checkpoint_url=url),
                                    {url: checkpoint, source_url: source})
    fetched = printed_paths(invoke("fetch", "--target", "fetched", "--source", env=env).stdout)
    assert [path.read_bytes() for path in fetched] == [checkpoint, source]
    assert all(Path(env["DS2IR_CACHE"]) in path.parents for path in fetched)
    offline = printed_paths(invoke("fetch", "--target", "fetched", "--offline", env=env).stdout)
    assert offline == fetched[:1]  # no --source: the weights only
    assert len(asset_server.requests_for(ASSET)) == 1 and len(asset_server.requests_for(ASSET + ".source")) == 1


def test_fetch_import_puts_a_verified_file_into_an_empty_cache(tmp_path, asset_server):  # noqa: F811
    brought = release_tarball(tmp_path / "brought.tar.gz")
    url = asset_server.url(ASSET)  # never served: the file came another way
    env = pinned_assets_environment(tmp_path, served_release_targets("fetched", "release", checkpoint_url=url),
                                    {url: brought.read_bytes()})
    [imported] = printed_paths(invoke("fetch", "--import", str(brought), "--url", url, env=env).stdout)
    assert imported.read_bytes() == brought.read_bytes() and Path(env["DS2IR_CACHE"]) in imported.parents
    assert printed_paths(invoke("fetch", "--target", "fetched", "--offline", env=env).stdout) == [imported]
    assert asset_server.requests_for(ASSET) == []
    tampered = tmp_path / "tampered.tar.gz"
    body = bytearray(brought.read_bytes())
    body[len(body) // 2] ^= 0xFF
    tampered.write_bytes(bytes(body))
    refused = invoke("fetch", "--import", str(tampered), "--url", url, env=env, check=False)
    assert refused.returncode == 2 and "ds2ir: error:" in refused.stdout and "Traceback" not in refused.stdout
    assert imported.read_bytes() == brought.read_bytes()


def test_fetch_of_a_pbmm_target_fetches_the_model(tmp_path, asset_server):  # noqa: F811
    model = b"a memory-mapped model, pinned in the lock"
    url = asset_server.add("/releases/v0.0-test/model.pbmm", model)
    targets = served_release_targets("fetched", "pbmm", model_url=url)
    env = pinned_assets_environment(tmp_path, targets, {url: model})
    [fetched] = printed_paths(invoke("fetch", "--target", "fetched", env=env).stdout)
    assert fetched.name == "model.pbmm" and fetched.read_bytes() == model  # the pinned model, not the checkpoint
