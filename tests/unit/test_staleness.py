"""Stamps and staleness (`Builder`) against an engine that runs each stage as a few lines of Python.

The stages' real work is the e2e tests' (tests/e2e/test_rebuild.py); here each "container"
writes its outputs from its inputs at once, so that every rule of the up-to-date check
(which stages rerun, why, what a stamp records) is exercised in milliseconds.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Dict, List

import pytest

from ds2ir.errors import ContainerError, Ds2irError, MissingInputError
from ds2ir.host import build
from ds2ir.host.clean import TARGET_MARK
from ds2ir.host.docker import ARTIFACTS_LABEL
from ds2ir.host.project import Project
from ds2ir.host.stamps import stages_for
from ds2ir.model.layout import CONTAINER_ARTIFACTS, CONTAINER_TARGETS, ArtifactLayout
from ds2ir.model.targets_file import load_target
from ds2ir.runner import Runner
from tests._support.checkout import targets_file

ALL = ["checkpoint", "freeze", "reference", "convert", "check"]


def digest(*paths: Path) -> bytes:
    """What a fake stage writes: a digest of everything it read, so outputs follow inputs."""
    sha = hashlib.sha256()
    for path in paths:
        for file in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
            sha.update(file.read_bytes())
    return sha.hexdigest().encode()


class Engine:
    """The part of `Docker` a Builder uses; stages run in-process. ``image_ids`` change an image."""

    def __init__(self) -> None:
        self.said: List[str] = []
        self.runner = Runner(echo_output=False, say=self.said.append)
        self.image_ids = {"freeze": "sha256:f1", "convert": "sha256:c1"}
        self.runs: List[Dict[str, object]] = []
        self.listed: List[str] = []
        self.writes_nothing = ""
        self.fails = ""

    def preflight(self) -> str:
        return "20.10.0"

    def engine(self) -> str:
        return "fake engine"

    @staticmethod
    def content_tag(name: str, context: object, **options: object) -> str:
        """``ds2ir/<image>:<stage>``: the stage (freeze-*, convert-* images) picks the image ID."""
        return f"{name}:{name.split('/')[1].split('-')[0]}"

    def image_id(self, tag: str) -> str:
        return self.image_ids[tag.rsplit(":", 1)[1]]

    def resolve_base_image(self, image: str) -> str:
        return image

    def image_packages(self, tag: str) -> List[str]:
        self.listed.append(tag)
        return ["numpy==1.0", "tensorflow==1.15.5"]

    def remove_stray_containers(self, artifacts: Path) -> List[str]:
        return []

    def run_container(self, *, step: str, image: str, args, mounts, labels, **options: object) -> str:
        command, name = args[0], args[2]
        binds = [dict(field.split("=", 1) if "=" in field else (field, "") for field in row)
                 for row in csv.reader(mounts)]
        read_only = {Path(bind["source"]): bind["target"] for bind in binds
                     if "readonly" in bind and bind["target"] != str(CONTAINER_TARGETS)}
        self.runs.append({"command": command, "image": image, "read_only": read_only})
        artifacts = Path(labels[ARTIFACTS_LABEL])
        if command == self.fails:
            raise ContainerError(step=step, command=["docker", "run", image, command], exit_code=1, log_tail="boom", image=image)
        if command == self.writes_nothing:
            return ""
        layout = ArtifactLayout.of(artifacts, load_target(targets_file(), name))  # name: TARGET or TARGET@VARIANT
        if command == "make-checkpoint":
            layout.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            (layout.checkpoint_dir / "best_dev-1.index").write_bytes(b"seeded weights")
        elif command == "freeze":
            layout.frozen_dir.mkdir(parents=True, exist_ok=True)
            layout.frozen_graph.write_bytes(digest(layout.checkpoint_dir))
            layout.frozen_pbmm.write_bytes(b"pbmm " + digest(layout.checkpoint_dir))
        elif command == "reference":
            layout.check_reference.parent.mkdir(parents=True, exist_ok=True)
            layout.check_reference.write_bytes(digest(layout.frozen_graph))
        elif command == "convert":
            layout.ir_dir.mkdir(parents=True, exist_ok=True)
            layout.ir_xml.write_bytes(b"<net/>" + digest(layout.frozen_graph))
            layout.ir_bin.write_bytes(digest(layout.frozen_graph) + image.encode())
        elif command == "check":
            layout.check_report.parent.mkdir(parents=True, exist_ok=True)
            layout.check_report.write_text(json.dumps({"passed": True, "engines": {"ir": "fake"}}))
        return ""


def ran(engine: Engine) -> List[str]:
    """The stages the last build ran, and forget them."""
    found = [m.group(1) for m in (re.match(r"\[[^]]+\] (\w+): running \(", line) for line in engine.said) if m]
    engine.said.clear()
    return found


def reasons(engine: Engine) -> Dict[str, str]:
    found = dict(re.findall(r"\] (\w+): running \((.*)\)$", "\n".join(engine.said), flags=re.MULTILINE))
    engine.said.clear()
    return found


@pytest.fixture
def engine() -> Engine:
    return Engine()


def builder(tmp_path: Path, engine: Engine, target=None, **options) -> build.Builder:
    project = Project.of_checkout(tmp_path / "project", {"artifacts": str(tmp_path / "artifacts")}, environ={})
    return build.Builder(target or load_target(targets_file(), "synthetic-small"), project=project,
                         docker=engine, **options)


def test_a_second_build_runs_nothing_and_the_stamps_record_key_outputs_and_seconds(tmp_path, engine):
    first = builder(tmp_path, engine)
    timings = first.build()
    assert ran(engine) == ALL and list(timings) == ALL and all(seconds >= 0 for seconds in timings.values())
    for stage in stages_for(first.target, first.layout):
        stamp = json.loads((first.layout.stamps_dir / f"{stage.name}.json").read_text())
        assert stamp["key"] == first._stage_key(stage) and len(stamp["key"]) == 64
        assert stamp["outputs"] == first.stamps.outputs(stage) and stamp["seconds"] >= 0
    assert builder(tmp_path, engine).build() == {}
    stages_said = [line for line in engine.said if not line.startswith("image ")]  # images: "is up to date"
    assert stages_said == [f"[synthetic-small] {name}: up to date, skipped" for name in ALL]


def test_force_reruns_every_stage(tmp_path, engine):
    builder(tmp_path, engine).build()
    ran(engine)
    builder(tmp_path, engine, force=True).build()
    assert reasons(engine) == {name: "--force" for name in ALL}


def test_a_changed_output_reruns_its_stage_only_when_its_rewrite_is_the_same(tmp_path, engine):
    first = builder(tmp_path, engine)
    first.build()
    ran(engine)
    first.layout.frozen_graph.write_bytes(b"edited by hand")
    builder(tmp_path, engine).build()
    assert reasons(engine) == {"freeze": "outputs differ from what the last run wrote (modified or corrupted)"}
    first.layout.ir_bin.unlink()
    builder(tmp_path, engine).build()
    assert reasons(engine) == {"convert": "outputs missing"}


def test_a_changed_input_reruns_the_stages_that_read_it_and_what_follows(tmp_path, engine):
    first = builder(tmp_path, engine)
    first.build()
    ran(engine)
    (first.layout.checkpoint_dir / "best_dev-1.index").write_bytes(b"other weights")
    builder(tmp_path, engine).build()
    assert reasons(engine) == {"checkpoint": "outputs differ from what the last run wrote (modified or corrupted)"}
    (first.layout.checkpoint_dir / "extra").write_bytes(b"a file the checkpoint stage did not write")
    builder(tmp_path, engine).build()
    assert ran(engine) == ["checkpoint", "freeze", "reference", "convert", "check"]


def test_a_lost_stamp_reruns_that_stage_and_nothing_after_it(tmp_path, engine):
    first = builder(tmp_path, engine)
    first.build()
    ran(engine)
    (first.layout.stamps_dir / "reference.json").unlink()
    (first.layout.stamps_dir / "convert.json").write_text("{not json")
    builder(tmp_path, engine).build()
    assert reasons(engine) == {"reference": "never built", "convert": "never built"}


@pytest.mark.parametrize("change, expected", [
    ({"description": "another description"}, []),
    ({"ir_precision": "FP16"}, ["convert", "check"]),
    ({"weight_compression": "int8"}, ["convert", "check"]),
    ({"lstm": "hoisted"}, ALL[1:]),  # the freeze image reads it; the checkpoint does not (every LSTM restores it)
    ({"seed": 7}, ALL),
])
def test_a_configuration_change_reruns_exactly_the_stages_that_read_it(tmp_path, engine, change, expected):
    builder(tmp_path, engine).build()
    ran(engine)
    changed = dataclasses.replace(load_target(targets_file(), "synthetic-small"), **change)
    changed = dataclasses.replace(changed, variants=(changed.variant,))  # the target's own keys: its default variant
    builder(tmp_path, engine, target=changed).build()
    assert reasons(engine) == {name: "inputs, image or configuration changed" for name in expected}


def test_a_new_image_reruns_the_stages_it_runs(tmp_path, engine):
    builder(tmp_path, engine).build()
    ran(engine)
    engine.image_ids["convert"] = "sha256:c2"
    builder(tmp_path, engine).build()
    assert ran(engine) == ["convert", "check"]
    engine.image_ids["freeze"] = "sha256:f2"
    builder(tmp_path, engine).build()
    assert ran(engine) == ["checkpoint", "freeze", "reference"]  # same weights, same graph: convert stays


def test_until_stops_after_the_named_stage(tmp_path, engine):
    first = builder(tmp_path, engine)
    assert list(first.build(until="convert")) == ALL[:-1]
    assert not (first.layout.check_dir / "report.json").exists() and not (first.layout.stamps_dir / "check.json").exists()
    assert list(builder(tmp_path, engine).build(until="freeze")) == []


def test_a_failed_stage_leaves_no_stamp_and_reruns_next_time(tmp_path, engine):
    first = builder(tmp_path, engine)
    first.build()
    ran(engine)
    engine.image_ids["convert"] = "sha256:c2"
    engine.fails = "convert"
    with pytest.raises(ContainerError):
        builder(tmp_path, engine).build()
    assert not (first.layout.stamps_dir / "convert.json").exists()  # the old stamp is gone before the stage starts
    engine.fails = ""
    ran(engine)
    builder(tmp_path, engine).build()
    assert ran(engine) == ["convert", "check"]


def test_a_stage_that_writes_nothing_is_an_error_and_stamps_nothing(tmp_path, engine):
    engine.writes_nothing = "reference"
    first = builder(tmp_path, engine)
    with pytest.raises(Ds2irError, match=r"Stage 'reference' finished but did not write .*tf_reference\.npz"):
        first.build()
    assert not (first.layout.stamps_dir / "reference.json").exists()
    assert (first.layout.stamps_dir / "freeze.json").is_file()


def test_a_missing_input_names_the_stage_and_the_path(tmp_path, engine):
    first = builder(tmp_path, engine)
    first.build()
    for path in first.layout.checkpoint_dir.iterdir():
        path.unlink()
    first.layout.checkpoint_dir.rmdir()
    first.images()
    freeze = stages_for(first.target, first.layout)[1]
    with pytest.raises(MissingInputError, match=rf"Stage 'freeze' needs {re.escape(str(first.layout.checkpoint_dir))}"):
        first._stage_key(freeze)


def test_every_stage_but_the_checkpoint_stage_sees_the_checkpoint_read_only(tmp_path, engine):
    builder(tmp_path, engine).build()
    mounts = {run["command"]: run["read_only"] for run in engine.runs}
    checkpoint = tmp_path / "artifacts" / "synthetic-small" / "checkpoint"
    assert mounts["make-checkpoint"] == {}
    for command in ("freeze", "reference", "convert", "check"):
        assert mounts[command] == {checkpoint: str(CONTAINER_ARTIFACTS / "synthetic-small" / "checkpoint")}


def test_the_manifest_lists_images_stages_inputs_and_outputs(tmp_path, engine):
    first = builder(tmp_path, engine)
    first.build()
    manifest = json.loads((first.layout.target_dir / "manifest.json").read_text())
    assert manifest["images"]["convert"]["id"] == "sha256:c1" and manifest["images"]["freeze"]["packages"] == [
        "numpy==1.0", "tensorflow==1.15.5"]
    assert list(manifest["stages"]) == sorted(ALL) and manifest["engines"] == {"ir": "fake"}
    assert manifest["inputs"] == {"synthetic-small/checkpoint/best_dev-1.index": hashlib.sha256(b"seeded weights").hexdigest()}
    assert manifest["outputs"] == first.output_hashes() and "ir/output_graph.bin" in manifest["outputs"]
    assert (first.layout.target_dir / TARGET_MARK).read_text() == "synthetic-small\n"


def test_packages_are_listed_once_per_image_and_again_when_their_cache_is_damaged(tmp_path, engine):
    builder(tmp_path, engine).build()
    assert len(engine.listed) == 2
    builder(tmp_path, engine, force=True).build()
    assert len(engine.listed) == 2  # cached by image ID
    cache = tmp_path / "artifacts" / ".cache" / "packages" / "sha256-c1.json"
    entry = json.loads(cache.read_text())
    cache.write_text(json.dumps(dict(entry, packages=["evil==6.6.6"])))
    builder(tmp_path, engine, force=True).build()
    assert engine.listed[2:] == ["ds2ir/convert-ov2024.6:convert"]
    assert json.loads(cache.read_text()) == entry


def test_a_variant_runs_only_the_stages_it_does_not_share_with_the_default(tmp_path, engine):
    """int8 and fp16 share the checkpoint, the frozen graph and its reference; the hoisted variants a frozen
    graph of their own; --force with every variant runs each shared stage once (build.share_runs)."""
    targets = {name: load_target(targets_file(), f"synthetic-small@{name}") for name in load_target(
        targets_file(), "synthetic-small").variants}
    builder(tmp_path, engine).build()
    ran(engine)
    for name, expected in (("int8", ["convert", "check"]), ("fp16", ["convert", "check"]),
                           ("hoisted-fp32", ["freeze", "reference", "convert", "check"]),
                           ("hoisted-int8", ["convert", "check"]), ("fp32", [])):
        builder(tmp_path, engine, target=targets[name]).build()
        assert ran(engine) == expected, name
    builders = build.share_runs([builder(tmp_path, engine, target=target, force=True) for target in targets.values()])
    for each in builders:
        each.build()
    assert ran(engine) == ALL + ["convert", "check"] * 2 + ["freeze", "reference", "convert", "check"] + ["convert", "check"]
    int8 = builders[2].layout
    assert int8.ir_xml == tmp_path / "artifacts/synthetic-small/variants/int8/ir/output_graph.xml"
    assert int8.ir_xml.read_bytes() == builders[0].layout.ir_xml.read_bytes()  # the fake converts the same graph alike
    assert (int8.variant_dir / "manifest.json").is_file()


def test_image_tags_name_the_images_the_stages_use_and_build_nothing(tmp_path, engine):
    """CI's cache keys (`invoke images --keys`): the target's stage images, found or built by nobody."""
    assert builder(tmp_path, engine).image_tags() == {"freeze": "ds2ir/freeze-tf1.15.5:freeze",
                                                      "convert": "ds2ir/convert-ov2024.6:convert"}
    assert engine.runs == [] and not any("Step 1/" in line for line in engine.said)
