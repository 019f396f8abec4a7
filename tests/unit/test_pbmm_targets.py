"""Targets built from a memory-mapped model (checkpoint = "pbmm"): configuration and the --model option."""
from __future__ import annotations

from pathlib import Path

import pytest

from ds2ir import fetch
from ds2ir.build import Builder, stages_for
from ds2ir.config import ArtifactLayout, TargetsFile, load_target
from ds2ir.docker import Docker
from ds2ir.errors import ConfigError
from ds2ir.runner import Runner
from tests.unit.test_config import _write

RELEASE_0_8_2 = "https://github.com/mozilla/DeepSpeech/releases/download/v0.8.2/"


def test_pbmm_targets_unpack_the_release_model_file_instead_of_freezing():
    target = load_target("deepspeech-0.8.2-pbmm")
    assert target.checkpoint == "pbmm" and target.release.model_url == RELEASE_0_8_2 + "deepspeech-0.8.2-models.pbmm"
    stages = stages_for(target, ArtifactLayout(Path("/a"), target.name))
    assert [stage.name for stage in stages] == ["freeze", "reference", "convert", "check"]
    assert stages[0].inputs == (Path("/a/deepspeech-0.8.2-pbmm/model/model.pbmm"),)
    assert stages[0].outputs == (Path("/a/deepspeech-0.8.2-pbmm/frozen/output_graph.pb"),
                                 Path("/a/deepspeech-0.8.2-pbmm/frozen/output_graph.pbmm"))
    assert load_target("deepspeech-0.9.3-pbmm").release.model_url.endswith("/v0.9.3/deepspeech-0.9.3-models.pbmm")


def test_the_0_8_2_model_file_is_pinned_to_the_digest_open_model_zoo_publishes():
    entry = fetch.read_lock(fetch.default_lock_path())[RELEASE_0_8_2 + "deepspeech-0.8.2-models.pbmm"]
    assert (entry.size, entry.sha256) == (188915984, "f1ad4347b276b7f0f35bc47954feb7240fad913f3a1b85605628ab6d6209b0c9")


def test_a_pbmm_target_cannot_ask_for_another_graph(tmp_path):
    with pytest.raises(ConfigError) as excinfo:
        TargetsFile.load(_write(tmp_path, '\n[targets.x]\nextends = "deepspeech-0.8.2-pbmm"\nlstm = "hoisted"\n'))
    assert excinfo.value.key == "targets.x.checkpoint"


def test_model_option_needs_a_pbmm_target(tmp_path):
    with pytest.raises(ConfigError, match="--model takes a memory-mapped model .* target 'synthetic-small' builds from "
                                          "its synthetic checkpoint"):
        Builder(load_target("synthetic-small"), project=tmp_path, artifacts=tmp_path, docker=Docker(Runner(dry_run=True)),
                model=tmp_path / "mine.pbmm")
