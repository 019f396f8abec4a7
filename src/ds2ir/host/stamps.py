"""Stages and their stamps: what each stage reads and writes, and whether it is up to date.

A stage is up to date when its stamp (``.stamps/<stage>.json`` beside what the stage writes: the target
directory for the checkpoint, the frozen graph's for freeze and reference, the variant's for convert and check)
records the same key (stage image ID, target configuration, SHA-256 of every input)
and its outputs still have the hashes recorded then. Anything else re-runs it, so
a changed weight, a new image or a corrupted output is never silently reused.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from ds2ir import atomic
from ds2ir.errors import Ds2irError, MissingInputError
from ds2ir.host import digests
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target

STAGE_ORDER = ("checkpoint", "freeze", "reference", "convert", "check")
# Target keys no freeze-image stage reads: changing one reruns only the convert-image stages.
CONVERT_ONLY_KEYS = ("convert_image", "ir_precision", "weight_compression")
#: what each stage's outputs are shared by: every variant of the target, the variants with its frozen
#: graph (the same LSTM), or the one variant; its stamp lies in that layer's directory (ArtifactLayout)
STAGE_SCOPE = {"checkpoint": "target", "freeze": "graph", "reference": "graph", "convert": "variant", "check": "variant"}


@dataclass(frozen=True)
class Stage:
    """One step: the container command, which image runs it, what it reads and writes."""

    name: str
    image: str  # "freeze" or "convert"
    command: str  # a ds2ir CLI command
    inputs: Tuple[Path, ...]
    outputs: Tuple[Path, ...]


def stages_for(target: Target, layout: ArtifactLayout) -> List[Stage]:
    """The target's stages in order (a release checkpoint is an input, not a stage)."""
    frozen = (layout.frozen_graph,)
    ir = (layout.ir_xml, layout.ir_bin)
    reference = (layout.check_reference,)
    weights = layout.model_file if target.checkpoint == "pbmm" else layout.checkpoint_dir
    stages = [
        Stage("freeze", "freeze", "freeze", (weights,), frozen + (layout.frozen_pbmm,)),
        Stage("reference", "freeze", "reference", frozen, reference),
        Stage("convert", "convert", "convert", frozen, ir),
        Stage("check", "convert", "check", ir + reference, (layout.check_report,)),
    ]
    if target.checkpoint == "synthetic":
        stages.insert(0, Stage("checkpoint", "freeze", "make-checkpoint", (), (layout.checkpoint_dir,)))
    elif target.checkpoint == "trained":
        stages.insert(0, Stage("checkpoint", "freeze", "train", (layout.training_dir,),
                               (layout.checkpoint_dir, layout.training_report)))
    return stages


def stamp_path(layout: ArtifactLayout, stage: str) -> Path:
    """Where a stage's stamp lies: beside the outputs the variants share (STAGE_SCOPE), so a variant
    finds the checkpoint, frozen graph and reference another variant made up to date."""
    scope = STAGE_SCOPE[stage]
    directory = {"target": layout.stamps_dir, "graph": layout.graph_stamps_dir, "variant": layout.variant_stamps_dir}[scope]
    return directory / f"{stage}.json"


def stage_configuration(target: Target, stage: Stage) -> Dict[str, object]:
    """The part of the target's configuration a stage's outputs can depend on: not its
    description, for freeze-image stages not the keys only the convert image reads, and for
    the checkpoint not the LSTM's form either (every variant's graph restores the same one)."""
    data = target.fingerprint()
    del data["description"]
    if stage.image == "freeze":
        for key in CONVERT_ONLY_KEYS:
            del data[key]
    if STAGE_SCOPE[stage.name] == "target":
        del data["lstm"]
    return data


class Hasher:
    """SHA-256 of files and directory trees, each file hashed at most once per build."""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[str, int, int], str] = {}

    def file(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._cache:
            self._cache[key] = digests.file_sha256(path)
        return self._cache[key]

    def tree(self, path: Path, root: Path) -> Dict[str, str]:
        """relative path -> digest for a file or every file under a directory."""
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        return {str(p.relative_to(root)): self.file(p) for p in files}


class Stamps:
    """The stamps of one variant of a target (paths relative to the artifacts ``root``)."""

    def __init__(self, layout: ArtifactLayout, root: Path, hasher: Hasher):
        self.layout = layout
        self.root = root
        self.hasher = hasher

    def path(self, stage: Stage) -> Path:
        return stamp_path(self.layout, stage.name)

    def key(self, stage: Stage, *, image_id: str, configuration: Dict[str, object],
            environment: Mapping[str, str]) -> str:
        """What a stage's outputs depend on: command, image, configuration, its inputs' bytes and the
        ``environment`` that changes what it computes (absent when empty, so older stamps stay valid)."""
        inputs: Dict[str, str] = {}
        for path in stage.inputs:
            if not path.exists():
                raise MissingInputError(f"Stage '{stage.name}' needs {path}, which does not exist.")
            inputs.update(self.hasher.tree(path, self.root))
        material: Dict[str, object] = {"stage": stage.name, "command": stage.command, "image_id": image_id,
                                       "target": configuration, "inputs": inputs}
        if environment:
            material["environment"] = dict(environment)
        return digests.data_sha256(material)

    def outputs(self, stage: Stage) -> Optional[Dict[str, str]]:
        """The hashes of the stage's outputs, None when one is missing."""
        if not all(path.exists() for path in stage.outputs):
            return None
        hashes: Dict[str, str] = {}
        for path in stage.outputs:
            hashes.update(self.hasher.tree(path, self.root))
        return hashes

    def why_stale(self, stage: Stage, key: str, *, force: bool = False) -> Optional[str]:
        """None when up to date, else the reason to run."""
        if force:
            return "--force"
        try:
            stamp = json.loads(self.path(stage).read_text())
        except (OSError, ValueError):
            return "never built"
        if stamp.get("key") != key:
            return "inputs, image or configuration changed"
        outputs = self.outputs(stage)
        if outputs is None:
            return "outputs missing"
        if outputs != stamp.get("outputs"):
            return "outputs differ from what the last run wrote (modified or corrupted)"
        return None

    def forget(self, stage: Stage) -> None:
        """Drop the stage's stamp before it runs: a crash mid-stage must not leave a stale stamp."""
        with contextlib.suppress(FileNotFoundError):
            self.path(stage).unlink()

    def record(self, stage: Stage, key: str, seconds: float) -> None:
        """Stamp a stage that ran: its key and the hashes of the outputs it wrote."""
        outputs = self.outputs(stage)
        if outputs is None:
            raise Ds2irError(f"Stage '{stage.name}' finished but did not write {', '.join(map(str, stage.outputs))}.")
        atomic.write_json(self.path(stage), {"key": key, "outputs": outputs, "seconds": round(seconds, 3)})

    def seconds(self, stage: Stage) -> Optional[float]:
        """How long the stage's stamped run took, None when it has no stamp."""
        path = self.path(stage)
        return json.loads(path.read_text()).get("seconds") if path.is_file() else None
