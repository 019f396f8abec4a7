"""Host orchestration: run the stages of a target in their containers, only when needed.

A stage is up to date when its stamp (``artifacts/<target>/.stamps/<stage>.json``)
records the same key (stage image ID, target configuration, SHA-256 of every input)
and its outputs still have the hashes recorded then. Anything else re-runs it, so
a changed weight, a new image or a corrupted output is never silently reused.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ds2ir import atomic
from ds2ir.config import ArtifactLayout, Target, targets_file
from ds2ir.docker import Docker
from ds2ir.errors import Ds2irError, MissingInputError

STAGE_ORDER = ("checkpoint", "freeze", "reference", "convert", "check")


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
    reference = (layout.check_dir / "tf_reference.npz",)
    stages = [
        Stage("freeze", "freeze", "freeze", (layout.checkpoint_dir,), frozen),
        Stage("reference", "freeze", "reference", frozen, reference),
        Stage("convert", "convert", "convert", frozen, ir),
        Stage("check", "convert", "check", ir + reference, (layout.check_dir / "report.json",)),
    ]
    if target.checkpoint == "synthetic":
        stages.insert(0, Stage("checkpoint", "freeze", "make-checkpoint", (), (layout.checkpoint_dir,)))
    return stages


class Hasher:
    """SHA-256 of files and directory trees, each file hashed at most once per build."""

    def __init__(self) -> None:
        self._cache: Dict[Tuple[str, int, int], str] = {}

    def file(self, path: Path) -> str:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._cache:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._cache[key] = digest.hexdigest()
        return self._cache[key]

    def tree(self, path: Path, root: Path) -> Dict[str, str]:
        """relative path -> digest for a file or every file under a directory."""
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        return {str(p.relative_to(root)): self.file(p) for p in files}


class Builder:
    """Runs a target's stages through Docker with up-to-date checks."""

    def __init__(self, target: Target, *, project: Path, artifacts: Path, docker: Docker, force: bool = False):
        self.target = target
        self.project = project
        self.artifacts = artifacts
        self.layout = ArtifactLayout(artifacts, target.name)
        self.docker = docker
        self.force = force
        self.say = docker.runner.say
        self.hasher = Hasher()
        self._images: Dict[str, str] = {}

    # -- public --------------------------------------------------------------

    def images(self) -> Dict[str, str]:
        """Build (or find) both stage images; return stage -> tag."""
        if not self._images:
            for spec in (self.target.freeze_image, self.target.convert_image):
                self._images[spec.stage] = self.docker.ensure_stage_image(spec, self.project)
        return self._images

    def build(self, until: str = STAGE_ORDER[-1]) -> Dict[str, float]:
        """Run every stage up to ``until``; return wall seconds of the stages that ran."""
        self.docker.preflight()
        self.artifacts.mkdir(parents=True, exist_ok=True)
        timings: Dict[str, float] = {}
        with self._exclusive():
            atomic.remove_stale_temporaries(self.layout.target_dir)
            self._require_checkpoint()
            self.images()
            for stage in stages_for(self.target, self.layout):
                if STAGE_ORDER.index(stage.name) > STAGE_ORDER.index(until):
                    break
                seconds = self._run_if_needed(stage)
                if seconds is not None:
                    timings[stage.name] = seconds
        return timings

    # -- internals -----------------------------------------------------------

    def _require_checkpoint(self) -> None:
        if self.target.checkpoint != "release" or self.layout.checkpoint_dir.is_dir():
            return
        raise MissingInputError(
            f"Target '{self.target.name}' needs the DeepSpeech {self.target.release.name} release checkpoint in "
            f"{self.layout.checkpoint_dir}, and it is not there. Download "
            f"{self.target.release.checkpoint_url} and extract its files (best_dev-*, best_dev_checkpoint, "
            f"alphabet.txt, ...) into that directory, then run the build again. To build offline without "
            f"the release, use '--target synthetic-{self.target.release.name}'."
        )

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One build per artifacts directory at a time: a second one waits."""
        with open(self.artifacts / ".ds2ir.lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say(f"another ds2ir build holds {self.artifacts}/.ds2ir.lock; waiting for it to finish")
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _stage_key(self, stage: Stage) -> str:
        image = self._images[stage.image]
        inputs: Dict[str, str] = {}
        for path in stage.inputs:
            if not path.exists():
                raise MissingInputError(f"Stage '{stage.name}' needs {path}, which does not exist.")
            inputs.update(self.hasher.tree(path, self.artifacts))
        material = {
            "stage": stage.name,
            "command": stage.command,
            "image_id": self.docker.image_id(image) or image,
            "target": self.target.fingerprint(),
            "inputs": inputs,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()

    def _outputs(self, stage: Stage) -> Optional[Dict[str, str]]:
        if not all(path.exists() for path in stage.outputs):
            return None
        hashes: Dict[str, str] = {}
        for path in stage.outputs:
            hashes.update(self.hasher.tree(path, self.artifacts))
        return hashes

    def _stamp(self, stage: Stage) -> Path:
        return self.layout.stamps_dir / f"{stage.name}.json"

    def _why_stale(self, stage: Stage, key: str) -> Optional[str]:
        """None when up to date, else the reason to run."""
        if self.force:
            return "--force"
        try:
            stamp = json.loads(self._stamp(stage).read_text())
        except (OSError, ValueError):
            return "never built"
        if stamp.get("key") != key:
            return "inputs, image or configuration changed"
        outputs = self._outputs(stage)
        if outputs is None:
            return "outputs missing"
        if outputs != stamp.get("outputs"):
            return "outputs differ from what the last run wrote (modified or corrupted)"
        return None

    def _run_if_needed(self, stage: Stage) -> Optional[float]:
        key = self._stage_key(stage) if not self.docker.runner.dry_run else ""
        reason = self._why_stale(stage, key) if key else "dry run"
        if reason is None:
            self.say(f"[{self.target.name}] {stage.name}: up to date, skipped")
            return None
        self.say(f"[{self.target.name}] {stage.name}: running ({reason})")
        started = time.monotonic()
        with contextlib.suppress(FileNotFoundError):
            self._stamp(stage).unlink()  # a crash mid-stage must not leave a stale stamp
        self.docker.run_stage(
            step=stage.name,
            image=self._images[stage.image],
            args=[stage.command, "--target", self.target.name],
            artifacts=self.artifacts,
            targets=targets_file(),
        )
        seconds = time.monotonic() - started
        if not self.docker.runner.dry_run:
            outputs = self._outputs(stage)
            if outputs is None:
                raise Ds2irError(f"Stage '{stage.name}' finished but did not write {', '.join(map(str, stage.outputs))}.")
            atomic.write_json(self._stamp(stage), {"key": key, "outputs": outputs, "seconds": round(seconds, 3)})
        self.say(f"[{self.target.name}] {stage.name}: done in {seconds:.1f} s")
        return seconds


def clean(artifacts: Path, targets: Sequence[str]) -> List[Path]:
    """Remove the artifacts of the given targets (all when empty); return what went."""
    chosen = [artifacts / name for name in targets] if targets else sorted(p for p in artifacts.glob("*") if p.is_dir())
    removed = [path for path in chosen if path.exists()]
    for path in removed:
        shutil.rmtree(path)
    return removed
