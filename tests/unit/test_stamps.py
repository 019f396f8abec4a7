"""host/stamps.py on its own: each kind of target's stage graph, what a stage key holds, what a stamp
records (mutation testing found these unpinned by the Builder-level tests of test_staleness.py)."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from ds2ir.errors import Ds2irError
from ds2ir.host.stamps import Hasher, Stage, Stamps, stages_for
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file


@pytest.fixture
def layout(tmp_path) -> ArtifactLayout:
    return ArtifactLayout(tmp_path, "t")


def graph(checkpoint: str, layout: ArtifactLayout):
    target = dataclasses.replace(load_target(targets_file(), "synthetic-small"), checkpoint=checkpoint)
    return [(s.name, s.image, s.command, s.inputs, s.outputs) for s in stages_for(target, layout)]


def test_each_kind_of_checkpoint_has_its_stage_graph(layout):
    frozen, ir = (layout.frozen_graph,), (layout.ir_xml, layout.ir_bin)
    reference = (layout.check_dir / "tf_reference.npz",)
    common = [
        ("reference", "freeze", "reference", frozen, reference),
        ("convert", "convert", "convert", frozen, ir),
        ("check", "convert", "check", ir + reference, (layout.check_dir / "report.json",)),
    ]
    freeze_from_checkpoint = ("freeze", "freeze", "freeze", (layout.checkpoint_dir,), frozen + (layout.frozen_pbmm,))
    assert graph("synthetic", layout) == [
        ("checkpoint", "freeze", "make-checkpoint", (), (layout.checkpoint_dir,)), freeze_from_checkpoint, *common]
    assert graph("trained", layout) == [
        ("checkpoint", "freeze", "train", (layout.training_dir,), (layout.checkpoint_dir, layout.training_report)),
        freeze_from_checkpoint, *common]
    assert graph("release", layout) == [freeze_from_checkpoint, *common]  # the release's checkpoint is an input
    assert graph("pbmm", layout) == [
        ("freeze", "freeze", "freeze", (layout.model_file,), frozen + (layout.frozen_pbmm,)), *common]


def test_files_of_the_same_size_and_time_are_hashed_each_for_itself(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    os.utime(str(a), ns=(1, 1))
    os.utime(str(b), ns=(1, 1))
    hasher = Hasher()
    assert hasher.file(a) != hasher.file(b)


def stamps_with_output(layout: ArtifactLayout) -> Stamps:
    layout.check_dir.mkdir(parents=True)
    (layout.check_dir / "report.json").write_text("{}")
    return Stamps(layout, layout.root, Hasher())


CHECK = Stage("check", "convert", "check", (), ())


def key(stamps: Stamps, stage: Stage, **changes) -> str:
    arguments = dict(image_id="sha256:1", configuration={"n_hidden": 64}, environment={})
    arguments.update(changes)
    return stamps.key(stage, **arguments)


@pytest.mark.parametrize("change", [
    {"image_id": "sha256:2"}, {"configuration": {"n_hidden": 32}}, {"environment": {"ONEDNN_MAX_CPU_ISA": "AVX2"}},
])
def test_a_stage_key_changes_with_its_image_configuration_and_environment(layout, change):
    stamps = stamps_with_output(layout)
    stage = Stage("check", "convert", "check", (layout.check_dir / "report.json",), ())
    assert key(stamps, stage, **change) != key(stamps, stage)
    assert key(stamps, stage, **change) == key(stamps, stage, **change)


def test_the_isa_setting_is_in_the_key_with_its_value(layout):
    stamps = stamps_with_output(layout)
    assert key(stamps, CHECK, environment={"ONEDNN_MAX_CPU_ISA": "AVX2"}) != \
        key(stamps, CHECK, environment={"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"})


def test_a_stage_key_changes_with_the_command_and_the_name(layout):
    stamps = stamps_with_output(layout)
    assert len({key(stamps, CHECK), key(stamps, dataclasses.replace(CHECK, command="other")),
                key(stamps, dataclasses.replace(CHECK, name="other"))}) == 3


def test_a_stamp_records_key_outputs_and_seconds_to_the_millisecond(layout):
    stamps = stamps_with_output(layout)
    stage = Stage("check", "convert", "check", (), (layout.check_dir / "report.json",))
    assert stamps.seconds(stage) is None
    stamps.record(stage, "k" * 64, 1.23456)
    assert json.loads(stamps.path(stage).read_text()) == {
        "key": "k" * 64, "outputs": {"t/check/report.json": stamps.hasher.file(layout.check_dir / "report.json")},
        "seconds": 1.235}
    assert stamps.seconds(stage) == 1.235 and stamps.why_stale(stage, "k" * 64) is None


def test_a_stage_that_wrote_none_of_its_outputs_names_them_all(layout):
    stamps = Stamps(layout, layout.root, Hasher())
    stage = Stage("freeze", "freeze", "freeze", (), (layout.frozen_graph, layout.frozen_pbmm))
    with pytest.raises(Ds2irError) as excinfo:
        stamps.record(stage, "k", 1.0)
    assert str(excinfo.value).endswith(f"did not write {layout.frozen_graph}, {layout.frozen_pbmm}.")
    assert not stamps.path(stage).exists()


def test_forget_drops_a_stamp_and_a_missing_one_is_no_error(layout):
    stamps = stamps_with_output(layout)
    stage = Stage("check", "convert", "check", (), (layout.check_dir / "report.json",))
    stamps.record(stage, "k", 1.0)
    stamps.forget(stage)
    stamps.forget(stage)
    assert not Path(stamps.path(stage)).exists() and stamps.why_stale(stage, "k") == "never built"
