"""Host orchestration: run the stages of a target in their containers, only when needed.

What each stage reads and writes and when it is up to date is in stamps.py; the inputs no
stage makes (checkpoints, training data, model files) in inputs.py.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set

from ds2ir import atomic
from ds2ir.errors import CommandTimeoutError, ConfigError
from ds2ir.host import digests, manifest, upstream
from ds2ir.host.clean import TARGET_MARK
from ds2ir.host.docker import Docker
from ds2ir.host.images import ensure_stage_image, stage_image_tag
from ds2ir.host.inputs import TargetInputs
from ds2ir.host.launch import ISA_ENVIRONMENT, StageLauncher, forwarded_environment
from ds2ir.host.project import Project
from ds2ir.host.stamps import STAGE_ORDER, Hasher, Stage, Stamps, stage_configuration, stages_for
from ds2ir.model import cpu
from ds2ir.model.layout import CONTAINER_ARTIFACTS, ArtifactLayout
from ds2ir.model.targets import ImageSpec, Target

#: one lock file per target at the artifacts root: builds of one target take turns, other targets run beside
LOCKS_DIR = ".locks"


class Builder:
    """Runs a target's stages through Docker with up-to-date checks."""

    def __init__(self, target: Target, *, project: Project, docker: Docker, force: bool = False,
                 offline: bool = False, trust_on_first_use: bool = False, model: Optional[Path] = None):
        """``project``: the checkout's files, artifacts included; ``model``: the user's own .pbmm, for a target
        with checkpoint = "pbmm" (else the release's is fetched)."""
        if model is not None and target.checkpoint != "pbmm":
            raise ConfigError(f"--model takes a memory-mapped model (.pbmm) for a target with checkpoint = \"pbmm\" "
                              f"(e.g. deepspeech-0.8.2-pbmm), but target '{target.name}' builds from its "
                              f"{target.checkpoint} checkpoint. Pass --target deepspeech-0.8.2-pbmm with --model.")
        self.target = target
        self.offline = offline
        self.trust_on_first_use = trust_on_first_use
        self.project = project
        self.artifacts = project.artifacts
        self.layout = ArtifactLayout.of(project.artifacts, target)
        self.docker = docker
        self.force = force
        self.say = docker.runner.say
        self.launcher = StageLauncher(docker, artifacts=self.artifacts, targets=project.targets)
        self.hasher = Hasher()
        self.stamps = Stamps(self.layout, self.artifacts, self.hasher)
        self.inputs = TargetInputs(target, self.layout, project=project, hasher=self.hasher, say=self.say,
                                   dry_run=docker.runner.dry_run, offline=offline,
                                   trust_on_first_use=trust_on_first_use, model=model)
        self._images: Dict[str, str] = {}
        #: the platform each stage's image is built and run for (its spec's, from targets.toml)
        self._platforms: Dict[str, str] = {}
        self._holding_lock = False
        #: the stamps of the stages run in this invocation; the builders of one target's variants share
        #: it (share_runs), so that --force runs a stage they share once
        self.already_run: Set[Path] = set()

    # -- public --------------------------------------------------------------

    def images(self) -> Dict[str, str]:
        """Build (or find) both stage images; return stage -> tag.

        An image installing DeepSpeech's source (exporter "deepspeech") first gets the
        release's source archive, fetched and verified on the host like the checkpoint.
        """
        if not self._images:
            for spec in (self.target.freeze_image, self.target.convert_image):
                if self.docker.runner.dry_run and spec.source_release:  # a dry run downloads nothing
                    self.say(f"(dry run) would fetch {spec.source_url} and build image '{spec.name}' from it")
                    self._images[spec.stage] = f"ds2ir/{spec.name}:dry-run"
                    self._platforms[spec.stage] = spec.platform
                    continue
                self.add_image(spec.stage, spec)
        return self._images

    def image_tags(self) -> Dict[str, str]:
        """stage -> the content tag of the target's stage image, built or not (CI's cache keys)."""
        return {spec.stage: stage_image_tag(self.docker, spec, self.docker.resolve_base_image(spec.base_image), self.project.root,
                                            source=self.source_archive(spec))
                for spec in (self.target.freeze_image, self.target.convert_image)}

    def add_image(self, role: str, spec: ImageSpec) -> str:
        """Build (or find) ``spec``'s image for containers run as ``role`` ("freeze", "convert", "app")."""
        self._images[role] = ensure_stage_image(self.docker, spec, self.project.root, source=self.source_archive(spec))
        self._platforms[role] = spec.platform
        return self._images[role]

    def image_platform(self, stage: str) -> str:
        """The platform of the stage's image (after :meth:`images`): what its containers run as."""
        return self._platforms[stage]

    def source_archive(self, spec: ImageSpec) -> Optional[Path]:
        """The verified source archive an image installs (``source_release``), fetched on the host; else None."""
        if not spec.source_release:
            return None
        return upstream.fetch_source(spec, self.project, offline=self.offline, trust_on_first_use=self.trust_on_first_use)

    def release_scorer(self) -> Path:
        """The release's scorer (``--scorer release``), fetched and verified on the host."""
        return self.inputs.release_scorer()

    def build(self, until: str = STAGE_ORDER[-1]) -> Dict[str, float]:
        """Run every stage up to ``until``; return wall seconds of the stages that ran."""
        docker_version = self.docker.preflight()
        timings: Dict[str, float] = {}
        stages = stages_for(self.target, self.layout)
        with atomic.storage_errors(self.artifacts), self.exclusive():
            self._clean_up_after_interrupted_builds()
            self.images()  # before any download: a base image that cannot be had fails fast, leaving nothing
            self._mark_target_dir()
            self.inputs.require()
            try:
                for stage in stages:
                    if STAGE_ORDER.index(stage.name) > STAGE_ORDER.index(until):
                        break
                    seconds = self._run_if_needed(stage)
                    if seconds is not None:
                        timings[stage.name] = seconds
                    if stage.name == "freeze" and self.inputs.unverified is not None:
                        self.inputs.verify_by_agreement()
            except BaseException:
                if self.inputs.unverified is not None:  # never leave a checkpoint nothing has verified
                    self.inputs.discard_unverified(self.stamps.path(stages[0]))
                raise
            if not self.docker.runner.dry_run and (timings or not self.layout.manifest.is_file()):
                self._write_manifest(docker_version)
        return timings

    def output_hashes(self) -> Dict[str, str]:
        """SHA-256 of each promised output (frozen graph, IR) that exists."""
        return {name: self.hasher.file(path) for name, path in manifest.output_files(self.layout).items() if path.is_file()}

    def run_stage(self, command: str, image: str, *extra: str, read_only: Optional[Dict[Path, str]] = None,
                  capture: bool = False) -> str:
        """Run a ds2ir command in a stage image; every stage but the one making it sees the checkpoint read-only."""
        mounts = dict(read_only or {})
        checkpoint_stage = stages_for(self.target, self.layout)[0]
        if self.layout.checkpoint_dir.is_dir() and not (checkpoint_stage.name == "checkpoint" and checkpoint_stage.command == command):
            mounts[self.layout.checkpoint_dir] = str(CONTAINER_ARTIFACTS / self.target.name / "checkpoint")
        try:
            return self.launcher.run(
                step=command, image=self._images[image], args=[command, "--target", self.target.label, *extra],
                read_only=mounts, capture=capture, timeout=self.target.stage_time_limit,
                platform=self.image_platform(image),
            )
        except CommandTimeoutError as exc:
            if self._holding_lock:  # its container is gone and no other build runs here: drop what it was writing
                atomic.remove_stale_temporaries(self.layout.target_dir)
            raise CommandTimeoutError(
                step=exc.step, command=exc.command, timeout=exc.timeout, log_tail=exc.log_tail,
                fix=(f"Its container was stopped and removed; what it was writing never got a final name (outputs are "
                     f"renamed into place only when complete). If the stage needs longer, raise stage_time_limit "
                     f"({self.project.targets}: [targets.\"{self.target.name}\"]); if it hangs, rerun with --debug."),
            ) from exc

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One build per target and artifacts directory at a time: a second one waits (a dry run writes no lock file).

        Builds of different targets run side by side (`invoke matrix --jobs N`).
        """
        if self.docker.runner.dry_run:
            yield
            return
        lock = self.artifacts / LOCKS_DIR / f"{self.target.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.say(f"another ds2ir build holds {lock}; waiting for it to finish")
                fcntl.flock(handle, fcntl.LOCK_EX)
            self._holding_lock = True
            try:
                yield
            finally:
                self._holding_lock = False

    # -- internals -----------------------------------------------------------

    def _clean_up_after_interrupted_builds(self) -> None:
        """Stop the containers of killed builds of this directory, then drop their temporaries."""
        if self.docker.runner.dry_run:
            self.say(f"(dry run) would remove stray containers of {self.artifacts} and temporaries under "
                     f"{self.layout.target_dir}")
            return
        for name in self.docker.remove_stray_containers(self.artifacts):
            self.say(f"removed stray container {name} (left running by an interrupted build of {self.artifacts})")
        atomic.remove_stale_temporaries(self.layout.target_dir)

    def _mark_target_dir(self) -> None:
        """Mark the target directory as ds2ir's, so that `invoke clean` may remove it (never in a dry run)."""
        mark = self.layout.target_dir / TARGET_MARK
        if not self.docker.runner.dry_run and not mark.is_file():
            atomic.write_bytes(mark, (self.target.name + "\n").encode("utf-8"))

    def _stage_key(self, stage: Stage) -> str:
        image = self._images[stage.image]
        environment = {key: value for key, value in forwarded_environment().items() if key in ISA_ENVIRONMENT}
        return self.stamps.key(stage, image_id=self.docker.image_id(image) or image,
                               configuration=stage_configuration(self.target, stage), environment=environment)

    def _run_if_needed(self, stage: Stage) -> Optional[float]:
        dry_run = self.docker.runner.dry_run
        if dry_run and self.stamps.path(stage) in self.already_run:  # another variant's (dry) run made it
            self.say(f"[{self.target.label}] {stage.name}: made above for another variant, skipped")
            return None
        key = "" if dry_run else self._stage_key(stage)
        forced = self.force and self.stamps.path(stage) not in self.already_run
        reason = "dry run" if dry_run else self.stamps.why_stale(stage, key, force=forced)
        if reason is None:
            self.say(f"[{self.target.label}] {stage.name}: up to date, skipped")
            return None
        self.say(f"[{self.target.label}] {stage.name}: running ({reason})")
        started = time.monotonic()
        if not dry_run:
            self.stamps.forget(stage)
        self.run_stage(stage.command, stage.image)
        seconds = time.monotonic() - started
        if not dry_run:
            self.stamps.record(stage, key, seconds)
        self.already_run.add(self.stamps.path(stage))
        self.say(f"[{self.target.label}] {stage.name}: done in {seconds:.1f} s")
        return seconds

    def _write_manifest(self, docker_version: str) -> None:
        images = {}
        for spec in (self.target.freeze_image, self.target.convert_image):
            tag = self._images[spec.stage]
            image_id = self.docker.image_id(tag) or ""
            images[spec.stage] = {"tag": tag, "id": image_id, "base_image": self.docker.resolve_base_image(spec.base_image),
                                  "platform": spec.platform, "packages": self._packages(tag, image_id)}
        stages = {}
        for stage in stages_for(self.target, self.layout):
            seconds = self.stamps.seconds(stage)
            if self.stamps.path(stage).is_file():
                stages[stage.name] = {"image": self._images[stage.image], "seconds": seconds,
                                      "command": ["python", "-m", "ds2ir", stage.command, "--target", self.target.label]}
        weights = self.layout.model_file if self.target.checkpoint == "pbmm" else self.layout.checkpoint_dir
        inputs = self.hasher.tree(weights, self.artifacts) if weights.exists() else {}
        report = self.layout.check_report
        engines = json.loads(report.read_text()).get("engines") if report.is_file() else None
        path = manifest.write(self.layout, self.target, inputs=inputs, outputs=self.output_hashes(), images=images,
                              stages=stages, docker_version=docker_version, cpu=cpu.describe(), engines=engines,
                              engine=self.launcher.where(self._images["freeze"], self.image_platform("freeze")))
        self.say(f"[{self.target.label}] manifest: {path}")

    def _packages(self, tag: str, image_id: str) -> List[str]:
        """`pip freeze` of an image, cached by image ID (an image never changes) with its digest,
        so a damaged cache entry is listed again instead of going into the manifest."""
        cache = self.artifacts / ".cache" / "packages" / f"{image_id.replace(':', '-')}.json"
        if cache.is_file():
            try:
                cached = json.loads(cache.read_text())
                if cached["sha256"] == digests.data_sha256(cached["packages"]):
                    return list(cached["packages"])
            except (ValueError, KeyError, TypeError):
                pass
            self.say(f"{cache} is damaged; listing the image's packages again")
        packages = self.docker.image_packages(tag)
        atomic.write_json(cache, {"packages": packages, "sha256": digests.data_sha256(packages)})
        return packages


def share_runs(builders: Sequence[Builder]) -> Sequence[Builder]:
    """Let the builders of one target's variants know what each other ran: a stage they share (checkpoint,
    freeze, reference) runs once, even with --force."""
    shared: Set[Path] = set()
    for builder in builders:
        builder.already_run = shared
    return builders
