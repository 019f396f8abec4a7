"""The release's published files: targets built from a memory-mapped model (checkpoint = "pbmm") and the
--model option; the release scorer (`invoke transcribe --scorer release`)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ds2ir.errors import ConfigError, FetchError, MissingInputError
from ds2ir.host import assets_lock
from ds2ir.host.build import Builder
from ds2ir.host.stamps import stages_for
from ds2ir.host.docker import Docker
from ds2ir.host.project import Project
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import TargetsFile, load_target
from ds2ir.runner import Runner
from tests._support.checkout import project, targets_file
from tests._support.http_server import asset_server  # noqa: F401  (pytest fixture)
from tests.unit.test_config import _write

RELEASE_0_8_2 = "https://github.com/mozilla/DeepSpeech/releases/download/v0.8.2/"


def test_pbmm_targets_unpack_the_release_model_file_instead_of_freezing():
    target = load_target(targets_file(), "deepspeech-0.8.2-pbmm")
    assert target.checkpoint == "pbmm" and target.release.model_url == RELEASE_0_8_2 + "deepspeech-0.8.2-models.pbmm"
    stages = stages_for(target, ArtifactLayout(Path("/a"), target.name))
    assert [stage.name for stage in stages] == ["freeze", "reference", "convert", "check"]
    assert stages[0].inputs == (Path("/a/deepspeech-0.8.2-pbmm/model/model.pbmm"),)
    assert stages[0].outputs == (Path("/a/deepspeech-0.8.2-pbmm/frozen/output_graph.pb"),
                                 Path("/a/deepspeech-0.8.2-pbmm/frozen/output_graph.pbmm"))
    assert load_target(targets_file(), "deepspeech-0.9.3-pbmm").release.model_url.endswith("/v0.9.3/deepspeech-0.9.3-models.pbmm")


def test_the_0_8_2_model_file_is_pinned_to_the_digest_open_model_zoo_publishes():
    entry = assets_lock.read_lock(project().assets_lock)[RELEASE_0_8_2 + "deepspeech-0.8.2-models.pbmm"]
    assert (entry.size, entry.sha256) == (188915984, "f1ad4347b276b7f0f35bc47954feb7240fad913f3a1b85605628ab6d6209b0c9")


def test_a_pbmm_target_cannot_ask_for_another_graph(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        TargetsFile.load(_write(tmp_path, '\n[targets.x]\nextends = "deepspeech-0.8.2-pbmm"\nlstm = "hoisted"\n'))
    assert excinfo.value.key == "targets.x.checkpoint"


def test_model_option_needs_a_pbmm_target(tmp_path):
    with pytest.raises(ConfigError, match="--model takes a memory-mapped model .* target 'synthetic-small' builds from "
                                          "its synthetic checkpoint"):
        Builder(load_target(targets_file(), "synthetic-small"), project=Project.of_checkout(tmp_path, {"artifacts": "."}, environ={}),
                docker=Docker(Runner(dry_run=True)),
                model=tmp_path / "mine.pbmm")


def test_release_scorer_is_pinned_to_the_digest_open_model_zoo_publishes():
    url = load_target(targets_file(), "deepspeech-0.8.2").release.scorer_url
    assert url == RELEASE_0_8_2 + "deepspeech-0.8.2-models.scorer"
    entry = assets_lock.read_lock(project().assets_lock)[url]
    assert (entry.size, entry.sha256) == (953363776, "d0cf926ab9cab54a8a7d70003b931b2d62ebd9105ed392d1ec9c840029867799")


def test_scorer_release_is_fetched_into_the_cache_verified_and_a_tampered_one_is_refused(
        tmp_path, monkeypatch, asset_server):  # noqa: F811
    body = b"a release scorer's bytes"
    good = asset_server.add("/v0.0/good.scorer", body)
    bad = asset_server.add("/v0.0/bad.scorer", body, served_body=b"A" + body[1:])
    lock = tmp_path / "assets.lock.toml"
    assets_lock.write_lock(lock, {url: assets_lock.LockEntry(size=len(body), sha256=hashlib.sha256(body).hexdigest())
                            for url in (good, bad)})
    settings = {"assets_lock": str(lock), "cache": str(tmp_path / "cache"), "artifacts": "a"}

    def builder(url: str) -> Builder:
        targets = TargetsFile.load(_write(tmp_path, f'\n[releases.t]\ngraph_version = 6\nn_hidden = 64\n'
                                                    f'source_url = "{url}.src"\nscorer_url = "{url}"\n\n'
                                                    f'[targets.x]\nextends = "synthetic-small"\nrelease = "t"\n'))
        return Builder(targets.target("x"), project=Project.of_checkout(tmp_path, settings, environ={}),
                       docker=Docker(Runner(dry_run=True)))

    path = builder(good).release_scorer()
    assert path.read_bytes() == body and tmp_path / "cache" in path.parents
    with pytest.raises(FetchError, match="'--scorer release' for target .* needs the DeepSpeech t scorer .*its sha256 is .*discarded"):
        builder(bad).release_scorer()
    assert sorted(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file()
                  and not p.name.endswith(".lock")) == [body]


def test_a_release_without_a_scorer_says_to_pass_one(tmp_path):
    builder = Builder(load_target(targets_file(), "coqui-stt-1.4.0"), project=Project.of_checkout(tmp_path, {"artifacts": "."}, environ={}),
                      docker=Docker(Runner(dry_run=True)))
    with pytest.raises(MissingInputError, match="names no scorer .* --scorer PATH"):
        builder.release_scorer()
