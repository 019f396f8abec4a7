"""A release target fetched from a loopback server: download, verify, extract, check, freeze, convert."""
from __future__ import annotations

import shutil

from ds2ir.model.layout import ArtifactLayout
from tests._support.http_server import asset_server  # noqa: F401  (pytest fixture)
from tests._support.tarballs import release_tarball
from tests.e2e.helpers import PROJECT, invoke, pinned_assets_environment, served_release_targets

ASSET = "/releases/v0.0-test/deepspeech-test-checkpoint.tar.gz"


def test_release_target_is_fetched_verified_and_built(tmp_path, asset_server):  # noqa: F811
    # The synthetic-small checkpoint, made by the real freeze image, packed as a release is.
    made = tmp_path / "made"
    invoke("freeze", "--target", "synthetic-small", "--artifacts", str(made))
    checkpoint = ArtifactLayout(made, "synthetic-small").checkpoint_dir
    tarball = release_tarball(tmp_path / "release.tar.gz", root="deepspeech-test-checkpoint",
                              files={p.name: p.read_bytes() for p in checkpoint.iterdir()})
    body = tarball.read_bytes()
    url = asset_server.add(ASSET, body)

    env = pinned_assets_environment(tmp_path, served_release_targets("fetched-small", "release", checkpoint_url=url),
                                    {url: body})
    artifacts = tmp_path / "artifacts"

    invoke("build", "--target", "fetched-small", "--artifacts", str(artifacts), env=env)
    layout = ArtifactLayout(artifacts, "fetched-small")
    assert sorted(p.name for p in layout.checkpoint_dir.iterdir()) == sorted(p.name for p in checkpoint.iterdir())
    assert layout.ir_xml.is_file() and layout.ir_bin.is_file()
    assert len(asset_server.requests_for(ASSET)) == 1

    # From clean again: the verified cache is used, nothing is downloaded.
    shutil.rmtree(artifacts)
    invoke("build", "--target", "fetched-small", "--artifacts", str(artifacts), env=env)
    assert len(asset_server.requests_for(ASSET)) == 1 and layout.ir_xml.is_file()


def test_tampered_release_is_refused_and_nothing_is_extracted(tmp_path, asset_server):  # noqa: F811
    body = release_tarball(tmp_path / "release.tar.gz").read_bytes()
    url = asset_server.add(ASSET, body, served_body=body[:-10] + b"0123456789")
    env = pinned_assets_environment(tmp_path, (PROJECT / "targets.toml").read_text().replace(
        'checkpoint_url = "https://github.com/mozilla/DeepSpeech/releases/download/v0.8.2/deepspeech-0.8.2-checkpoint.tar.gz"',
        f'checkpoint_url = "{url}"'), {url: body})
    result = invoke("build", "--artifacts", str(tmp_path / "artifacts"), env=env, check=False)
    assert result.returncode != 0 and "sha256" in result.stdout and "Traceback" not in result.stdout
    assert not (tmp_path / "artifacts" / "deepspeech-0.8.2" / "checkpoint").exists()
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
