"""Host orchestration: run the stages of a target in their containers, only when needed.

A stage is up to date when its stamp (``artifacts/<target>/.stamps/<stage>.json``)
records the same key (stage image ID, target configuration, SHA-256 of every input)
and its outputs still have the hashes recorded then. Anything else re-runs it, so
a changed weight, a new image or a corrupted output is never silently reused.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ds2ir import atomic
from ds2ir.errors import (
    AudioError,
    CheckpointError,
    CommandTimeoutError,
    ConfigError,
    ContainerError,
    DecoderError,
    Ds2irError,
    FetchError,
    MissingInputError,
    VerificationError,
)
from ds2ir.host import archive, digests, fetch, manifest, upstream
from ds2ir.host.assets_lock import LockEntry, read_lock, write_lock
from ds2ir.host.docker import ISA_ENVIRONMENT, Docker, forwarded_environment
from ds2ir.host.project import Project
from ds2ir.model import cpu, pbmm
from ds2ir.model.architecture import Architecture, model_variables
from ds2ir.model.layout import CONTAINER_ARTIFACTS, ArtifactLayout
from ds2ir.model.targets import ImageSpec, Target
from ds2ir.paths import check_name, regular_file

STAGE_ORDER = ("checkpoint", "freeze", "reference", "convert", "check")
#: written into every target directory a build starts: what `invoke clean` recognises as ds2ir's own
TARGET_MARK = ".ds2ir-target"
#: directories ds2ir keeps at the artifacts root beside the target directories (matrix.py, bench.py, ci.py)
ROOT_DIRECTORIES = ("matrix", "bench", "ci")
#: one lock file per target at the artifacts root: builds of one target take turns, other targets run beside
LOCKS_DIR = ".locks"
# Target keys no freeze-image stage reads: changing one reruns only the convert-image stages.
CONVERT_ONLY_KEYS = ("convert_image", "ir_precision", "weight_compression")


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
    weights = layout.model_file if target.checkpoint == "pbmm" else layout.checkpoint_dir
    stages = [
        Stage("freeze", "freeze", "freeze", (weights,), frozen + (layout.frozen_pbmm,)),
        Stage("reference", "freeze", "reference", frozen, reference),
        Stage("convert", "convert", "convert", frozen, ir),
        Stage("check", "convert", "check", ir + reference, (layout.check_dir / "report.json",)),
    ]
    if target.checkpoint == "synthetic":
        stages.insert(0, Stage("checkpoint", "freeze", "make-checkpoint", (), (layout.checkpoint_dir,)))
    elif target.checkpoint == "trained":
        stages.insert(0, Stage("checkpoint", "freeze", "train", (layout.training_dir,),
                               (layout.checkpoint_dir, layout.training_report)))
    return stages


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
        self.model = model
        self.target = target
        self.offline = offline
        self.trust_on_first_use = trust_on_first_use
        self.project = project
        self.artifacts = project.artifacts
        self.layout = ArtifactLayout(project.artifacts, target.name)
        self.docker = docker
        self.force = force
        self.say = docker.runner.say
        self.hasher = Hasher()
        #: the checkpoint archive extracted without a digest, to be verified by agreement after the freeze stage
        self._unverified: Optional[Path] = None
        self._images: Dict[str, str] = {}
        #: the platform each stage's image is built and run for (its spec's, from targets.toml)
        self._platforms: Dict[str, str] = {}
        self._holding_lock = False

    # -- public --------------------------------------------------------------

    def images(self) -> Dict[str, str]:
        """Build (or find) both stage images; return stage -> tag.

        An image installing DeepSpeech's source (exporter "deepspeech") first gets the
        release's source archive, fetched and verified on the host like the checkpoint.
        """
        if not self._images:
            for spec in (self.target.freeze_image, self.target.convert_image):
                self._platforms[spec.stage] = spec.platform
                if self.docker.runner.dry_run and spec.source_release:  # a dry run downloads nothing
                    self.say(f"(dry run) would fetch {spec.source_url} and build image '{spec.name}' from it")
                    self._images[spec.stage] = f"ds2ir/{spec.name}:dry-run"
                    continue
                self._images[spec.stage] = self.docker.ensure_stage_image(spec, self.project.root, source=self.source_archive(spec))
        return self._images

    def image_platform(self, stage: str) -> str:
        """The platform of the stage's image (after :meth:`images`): what its containers run as."""
        return self._platforms[stage]

    def source_archive(self, spec: ImageSpec) -> Optional[Path]:
        """The verified source archive an image installs (``source_release``), fetched on the host; else None."""
        if not spec.source_release:
            return None
        return upstream.fetch_source(spec, self.project, offline=self.offline, trust_on_first_use=self.trust_on_first_use)

    def build(self, until: str = STAGE_ORDER[-1]) -> Dict[str, float]:
        """Run every stage up to ``until``; return wall seconds of the stages that ran."""
        docker_version = self.docker.preflight()
        timings: Dict[str, float] = {}
        with atomic.storage_errors(self.artifacts), self._exclusive():
            self._clean_up_after_interrupted_builds()
            self.images()  # before any download: a base image that cannot be had fails fast, leaving nothing
            self._mark_target_dir()
            self._require_checkpoint()
            try:
                for stage in stages_for(self.target, self.layout):
                    if STAGE_ORDER.index(stage.name) > STAGE_ORDER.index(until):
                        break
                    seconds = self._run_if_needed(stage)
                    if seconds is not None:
                        timings[stage.name] = seconds
                    if stage.name == "freeze" and self._unverified is not None:
                        self._verify_by_agreement(self._unverified)
            except BaseException:
                if self._unverified is not None:  # never leave a checkpoint nothing has verified
                    self._discard_unverified(self._unverified)
                raise
            if not self.docker.runner.dry_run and (timings or not (self.layout.target_dir / "manifest.json").is_file()):
                self._write_manifest(docker_version)
        return timings

    def output_hashes(self) -> Dict[str, str]:
        """SHA-256 of each promised output (frozen graph, IR) that exists."""
        return {name: self.hasher.file(path) for name, path in manifest.output_files(self.layout).items() if path.is_file()}

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

    def _require_checkpoint(self) -> None:
        """Release targets: fetch (verified, cached) and extract the checkpoint unless it is there.

        Trained targets: copy the recording and transcript where the train stage sees them.
        Checkout targets: copy the checkpoint shipped in the checkout (locked data).
        """
        if self.docker.runner.dry_run:
            self.say("(dry run) would fetch and extract the checkpoint or copy the training data as needed")
            return
        if self.target.training is not None:
            self._copy_from_checkout({"audio.wav": self.target.training.audio,
                                      "transcript.txt": self.target.training.transcript},
                                     self.layout.training_dir, keys="training_audio/training_transcript")
        if self.target.checkpoint_path is not None:
            shipped = self.project.root / self.target.checkpoint_path
            files = {path.name: str(path.relative_to(self.project.root)) for path in sorted(shipped.glob("*")) if path.is_file()}
            if not files:
                raise MissingInputError(f"Target '{self.target.name}' uses the checkpoint shipped in {shipped}, which holds no "
                                        f"files; restore it from git (git checkout -- {self.target.checkpoint_path}) or fix "
                                        f"checkpoint_path in targets.toml.")
            self._copy_from_checkout(files, self.layout.checkpoint_dir, keys="checkpoint_path")
        if self.target.checkpoint == "pbmm":
            self._require_model()
        if self.target.checkpoint != "release":
            return
        if self._unverified_marker.is_file():  # an interrupted verification by agreement: start it again
            shutil.rmtree(str(self.layout.checkpoint_dir), ignore_errors=True)
            self._unverified_marker.unlink()
        if self.layout.checkpoint_dir.is_dir():
            return
        url = self.target.release.checkpoint_url
        assert url is not None, "config.py rejects release checkpoints of releases without one"
        lock = self.project.assets_lock
        try:
            if self._agreement_possible(url, lock):
                with tempfile.TemporaryDirectory() as scratch:  # pinned only once the weights agree
                    provisional = Path(scratch) / lock.name
                    shutil.copyfile(str(lock), str(provisional))
                    archive_path = fetch.fetch(url, lock_path=provisional, cache=self.project.cache, offline=self.offline, trust_on_first_use=True)
                self._unverified = archive_path
                atomic.write_bytes(self._unverified_marker, url.encode())
            else:
                archive_path = fetch.fetch(url, lock_path=lock, cache=self.project.cache, offline=self.offline,
                                           trust_on_first_use=self.trust_on_first_use)
        except FetchError as exc:
            raise FetchError(
                f"Target '{self.target.name}' needs the DeepSpeech {self.target.release.name} checkpoint {url}. {exc} "
                f"Alternatively extract the release's files into {self.layout.checkpoint_dir}; to build without "
                f"the release, use '--target synthetic-{self.target.release.name}'."
            ) from None
        archive.extract(archive_path, self.layout.checkpoint_dir)
        self.say(f"[{self.target.name}] checkpoint: extracted {archive_path.name} into {self.layout.checkpoint_dir}")

    def _agreement_possible(self, url: str, lock: Path) -> bool:
        """Whether a checkpoint without a digest can be verified by agreement: its release's .pbmm is pinned."""
        entries = read_lock(lock)
        model_url = self.target.release.model_url
        return (not self.trust_on_first_use and not entries.get(url, LockEntry()).sha256
                and model_url is not None and bool(entries.get(model_url, LockEntry()).sha256))

    def _verify_by_agreement(self, archive_path: Path) -> None:
        """Compare every weight of the frozen checkpoint with the pinned .pbmm's: bitwise equal pins the
        checkpoint's digest in the lock; any difference refuses it and removes what it left."""
        release, lock = self.target.release, self.project.assets_lock
        url, model_url = release.checkpoint_url, release.model_url
        assert url is not None and model_url is not None
        model = self._fetch_model()
        names = [variable.name for variable in model_variables(self.target.architecture, self.target.n_classes)]
        differences = pbmm.weight_differences(self.layout.frozen_graph.read_bytes(), model.read_bytes(), names,
                                              model_source=str(model))
        if differences:
            listed = "; ".join(f"{name}: max |Δ| {delta:.3g}" for name, delta in sorted(differences.items()))
            raise CheckpointError(
                f"The DeepSpeech {release.name} checkpoint {url} has no digest in {lock}, and its weights do not "
                f"agree with the release's model file {model_url}, whose digest is pinned: {listed}. Nothing was "
                f"recorded and the download was discarded. If you trust this checkpoint anyway, build with "
                f"--trust-on-first-use.")
        size, digest = digests.measure(archive_path)
        entries = read_lock(lock)
        entries[url] = LockEntry(size=size, sha256=digest)
        write_lock(lock, entries)
        pinned = entries[model_url].sha256
        atomic.write_json(self.layout.verification, {
            "checkpoint": url, "sha256": digest, "size": size,
            "verified_by": f"agreement: every weight equals, bit for bit, that of {model_url} (sha256 {pinned}, pinned)",
            "weights": names})
        self.say(f"[{self.target.name}] checkpoint: verified by agreement with {model_url} ({len(names)} weights "
                 f"bitwise equal); recorded its sha256 {digest} in {lock}")
        self._unverified_marker.unlink()
        self._unverified = None

    @property
    def _unverified_marker(self) -> Path:
        """Present while an extracted checkpoint awaits verification by agreement."""
        return self.layout.target_dir / ".unverified-checkpoint"

    def _discard_unverified(self, archive_path: Path) -> None:
        """Remove an unverified checkpoint, what was frozen from it and its download."""
        shutil.rmtree(str(self.layout.checkpoint_dir), ignore_errors=True)
        for path in (self.layout.frozen_graph, self.layout.frozen_pbmm, self._stamp(stages_for(self.target, self.layout)[0]),
                     archive_path, self._unverified_marker):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._unverified = None

    def release_scorer(self) -> Path:
        """The release's scorer (``--scorer release``): fetched into the cache on the host, with a progress bar
        (953 MB for 0.8.2), and verified against assets.lock.toml on every use."""
        return self._release_asset(self.target.release.scorer_url, "scorer", "scorer_url",
                                   f"'--scorer release' for target '{self.target.name}'",
                                   "pass a scorer file you have with --scorer PATH")

    def _release_asset(self, url: Optional[str], what: str, key: str, needed_by: str, alternative: str) -> Path:
        """A file of the target's release (its scorer, its .pbmm), fetched into the cache and verified;
        the errors say what needed it and how to do without it."""
        release = self.target.release
        if url is None:
            raise MissingInputError(f"{needed_by} needs the {what} of release '{release.name}', which names no {what} "
                                    f"({key} in targets.toml); {alternative}.")
        try:
            return fetch.fetch(url, lock_path=self.project.assets_lock, cache=self.project.cache, offline=self.offline,
                               trust_on_first_use=self.trust_on_first_use)
        except FetchError as exc:
            raise FetchError(f"{needed_by} needs the DeepSpeech {release.name} {what} {url}. {exc} "
                             f"Alternatively {alternative}.") from exc

    def _require_model(self) -> None:
        """"pbmm" targets: the user's --model, else the one already there, else the release's .pbmm (fetched,
        verified, cached). It is checked whole on the host, so a malformed file changes nothing."""
        destination = self.layout.model_file
        if self.model is None and destination.is_file():
            return
        source = self.model or self._fetch_model()
        pbmm.check_file(source)
        if destination.is_file() and self.hasher.file(destination) == self.hasher.file(source):
            return  # unchanged: keep the mtime, so the freeze stage stays up to date
        with atomic.atomic_path(destination) as tmp:
            shutil.copyfile(str(source), str(tmp))
        self.say(f"[{self.target.name}] model: {source} -> {destination}")

    def _fetch_model(self) -> Path:
        return self._release_asset(self.target.release.model_url, "model", "model_url", f"Target '{self.target.name}'",
                                   f"pass a .pbmm you have: 'invoke build --target {self.target.name} --model PATH.pbmm'")

    def _copy_from_checkout(self, sources: Dict[str, str], directory: Path, *, keys: str) -> None:
        """Make ``directory`` hold exactly the checkout files ``sources`` (name -> path from the project root)."""
        wanted = {}
        for name, relative in sources.items():
            path = self.project.root / relative
            if not path.is_file():
                raise MissingInputError(f"Target '{self.target.name}' needs {path}, which does not exist; "
                                        f"fix {keys} in targets.toml.")
            wanted[name] = path.read_bytes()
        present = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        if present == sorted(wanted) and all((directory / name).read_bytes() == data for name, data in wanted.items()):
            return  # unchanged: keep mtimes, so the stages that read it stay up to date
        with atomic.atomic_dir(directory) as tmp:
            for name, data in wanted.items():
                (tmp / name).write_bytes(data)

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
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

    def _write_manifest(self, docker_version: str) -> None:
        images = {}
        for spec in (self.target.freeze_image, self.target.convert_image):
            tag = self._images[spec.stage]
            image_id = self.docker.image_id(tag) or ""
            images[spec.stage] = {"tag": tag, "id": image_id, "base_image": self.docker.resolve_base_image(spec.base_image),
                                  "platform": spec.platform, "packages": self._packages(tag, image_id)}
        stages = {}
        for stage in stages_for(self.target, self.layout):
            stamp = self._stamp(stage)
            if stamp.is_file():
                stages[stage.name] = {"image": self._images[stage.image], "seconds": json.loads(stamp.read_text()).get("seconds"),
                                      "command": ["python", "-m", "ds2ir", stage.command, "--target", self.target.name]}
        weights = self.layout.model_file if self.target.checkpoint == "pbmm" else self.layout.checkpoint_dir
        inputs = self.hasher.tree(weights, self.artifacts) if weights.exists() else {}
        report = self.layout.check_dir / "report.json"
        engines = json.loads(report.read_text()).get("engines") if report.is_file() else None
        path = manifest.write(self.layout, self.target, inputs=inputs, outputs=self.output_hashes(), images=images,
                              stages=stages, docker_version=docker_version, cpu=cpu.describe(), engines=engines)
        self.say(f"[{self.target.name}] manifest: {path}")

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
            "target": self._configuration(stage),
            "inputs": inputs,
        }
        environment = {key: value for key, value in forwarded_environment().items() if key in ISA_ENVIRONMENT}
        if environment:  # absent otherwise, so stamps made without it stay valid
            material["environment"] = environment
        return digests.data_sha256(material)

    def _configuration(self, stage: Stage) -> Dict[str, object]:
        """The part of the target's configuration a stage's outputs can depend on: not its
        description, and for freeze-image stages not the keys only the convert image reads."""
        data = self.target.fingerprint()
        del data["description"]
        if stage.image == "freeze":
            for key in CONVERT_ONLY_KEYS:
                del data[key]
        return data

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
        if not self.docker.runner.dry_run:
            with contextlib.suppress(FileNotFoundError):
                self._stamp(stage).unlink()  # a crash mid-stage must not leave a stale stamp
        self._container(stage.command, stage.image)
        seconds = time.monotonic() - started
        if not self.docker.runner.dry_run:
            outputs = self._outputs(stage)
            if outputs is None:
                raise Ds2irError(f"Stage '{stage.name}' finished but did not write {', '.join(map(str, stage.outputs))}.")
            atomic.write_json(self._stamp(stage), {"key": key, "outputs": outputs, "seconds": round(seconds, 3)})
        self.say(f"[{self.target.name}] {stage.name}: done in {seconds:.1f} s")
        return seconds


    def _container(self, command: str, image: str, *extra: str, read_only: Optional[Dict[Path, str]] = None,
                   capture: bool = False) -> str:
        """Run a ds2ir command in a stage image; every stage but the one making it sees the checkpoint read-only."""
        mounts = dict(read_only or {})
        checkpoint_stage = stages_for(self.target, self.layout)[0]
        if self.layout.checkpoint_dir.is_dir() and not (checkpoint_stage.name == "checkpoint" and checkpoint_stage.command == command):
            mounts[self.layout.checkpoint_dir] = str(CONTAINER_ARTIFACTS / self.target.name / "checkpoint")
        try:
            return self.docker.run_stage(
                step=command, image=self._images[image], args=[command, "--target", self.target.name, *extra],
                artifacts=self.artifacts, targets=self.project.targets, read_only=mounts, capture=capture,
                timeout=self.target.stage_time_limit, platform=self.image_platform(image),
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

    def verify(self, recordings: Sequence[Path], precision: str) -> Path:
        """Stream real recordings through TF and the IR, compare and decode; return the report."""
        self.build()
        with self._exclusive():
            prepare_recordings(recordings, self.layout.verify_dir / "inputs", self.target.architecture)
            self._container("verify-tf", "freeze")
            self._container("verify-ir", "convert", "--precision", precision)
        return self.layout.verify_dir / "report.json"

    def transcribe(self, recording: Path, *, device: str, precision: str, scorer: Optional[Path] = None,
                   beam_width: Optional[int] = None, lm_alpha: Optional[float] = None,
                   lm_beta: Optional[float] = None) -> str:
        """Run the IR on one WAV as an application would, in the target's app image; return what it printed.

        Greedy decoding, or beam search with ``beam_width`` and/or a ``scorer``. The options and
        the scorer file are checked here first, so a mistake fails before any container starts.
        """
        from ds2ir.model import decode
        from ds2ir.model import scorer as scorers

        decode.check_options(scorer=scorer, beam_width=beam_width, lm_alpha=lm_alpha, lm_beta=lm_beta)
        regular_file(recording, "audio file", error=AudioError)  # a FIFO or directory fails here, not in the container
        spec = self.target.application_image
        if (scorer or beam_width) and "ds-ctcdecoder==" not in (self.project.root / spec.lock).read_text():
            raise DecoderError(f"Beam search needs ds_ctcdecoder, but target '{self.target.name}' transcribes in image "
                               f"'{spec.name}', whose lock {spec.lock} does not install it. Set the target's app_image "
                               f"in targets.toml to an image that does (app-ov2025.3), or drop --scorer/--beam-width.")
        if scorer:
            scorers.inspect(scorer)
        self.build()
        self._images["app"] = self.docker.ensure_stage_image(spec, self.project.root)
        self._platforms["app"] = spec.platform
        inside = f"/input/{recording.name}"
        mounts = {recording: inside}
        extra = ["--audio", inside, "--device", device, "--precision", precision]
        if scorer:
            mounts[scorer] = f"/input/scorer/{scorer.name}"
            extra += ["--scorer", mounts[scorer]]
        extra += ["--beam-width", str(beam_width)] if beam_width else []
        if lm_alpha is not None and lm_beta is not None:
            extra += ["--lm-alpha", repr(lm_alpha), "--lm-beta", repr(lm_beta)]
        return self._container("transcribe", "app", *extra, read_only=mounts, capture=True)


def verify_variants(builders: Sequence[Builder], recordings: Sequence[Path], precision: str) -> Path:
    """Verify a target and each of its variants on the same recordings, then put their errors and
    transcripts side by side in the first one's ``verify/variants.{json,md}``; return the markdown.

    A variant that fails is recorded and the others still run; the failure is raised at the end.
    """
    from ds2ir.model.verify import render_variant_comparison, variant_comparison

    reports: Dict[str, Dict[str, object]] = {}
    failures: List[str] = []
    for builder in builders:
        report = builder.layout.verify_dir / "report.json"
        with contextlib.suppress(FileNotFoundError):
            report.unlink()  # so that a report found after a failure is this run's
        try:
            builder.verify(recordings, precision)
        except ContainerError:  # verify-ir exits non-zero when the IR does not match, after writing its report
            if not report.is_file():
                raise
            failures.append(f"{builder.target.name} ({report})")
        reports[builder.target.variant] = json.loads(report.read_text())
    comparison = variant_comparison(reports)
    directory = builders[0].layout.verify_dir
    atomic.write_json(directory / "variants.json", comparison)
    atomic.write_bytes(directory / "variants.md", render_variant_comparison(comparison).encode("utf-8"))
    if failures:
        raise VerificationError(f"{len(failures)} of {len(builders)} IR variants do not match TensorFlow: "
                                f"{', '.join(failures)}; the comparison is in {directory / 'variants.md'}.")
    return directory / "variants.md"


def default_recordings(recordings: Path, layout: ArtifactLayout, arch: Architecture) -> List[Path]:
    """The WAVs in ``recordings`` (the checkout's data/: LDC93S1 at three rates), else a test signal made here."""
    from ds2ir.model.audio import synthetic_speech, write_wav

    shipped = sorted(recordings.glob("*.wav"))
    if shipped:
        return shipped
    signal = layout.verify_dir / "test-signal.wav"
    write_wav(signal, synthetic_speech(arch.sample_rate), arch.sample_rate)
    return [signal]


def prepare_recordings(recordings: Sequence[Path], directory: Path, arch: Architecture) -> None:
    """Features of each recording as the network's windows (numpy, on the host), for both runtimes."""
    import numpy as np

    from ds2ir.model.audio import read_wav
    from ds2ir.model.features import windows_for_samples

    if not recordings:
        raise MissingInputError("No recordings to verify with: pass --audio FILE.wav.")
    with atomic.atomic_dir(directory) as tmp:
        for index, path in enumerate(recordings):
            samples = read_wav(path, sample_rate=arch.sample_rate)
            _, windows = windows_for_samples(samples, arch, source=path)
            name = f"{index:02d}-{path.stem}"
            with open(tmp / f"{name}.npz", "wb") as handle:
                np.savez(handle, samples=samples, windows=windows.windows, valid_steps=np.int64(windows.valid_steps),
                         source=np.array(str(path)))


def clean(artifacts: Path, targets: Sequence[str], known: Sequence[str], *, dry_run: bool = False) -> List[Path]:
    """Remove the artifact directories of ``targets`` (all of ds2ir's when empty); return what went
    (``dry_run``: what would go, removing nothing).

    Only directories ds2ir recognises as its own (``is_target_dir``) are removed; anything else
    (a name that leaves ``artifacts``, a symlink, an unknown name, a directory ds2ir did not make)
    is refused with a ConfigError before anything is removed. ``known``: the targets file's names.
    """
    if targets:
        chosen = [_chosen_target_dir(artifacts, name, known) for name in dict.fromkeys(targets)]
        doomed = [path for path in chosen if path is not None]
    else:
        entries = sorted(p for p in artifacts.iterdir() if p.is_dir() or p.is_symlink()) if artifacts.is_dir() else []
        doomed = [p for p in entries if is_target_dir(p)]
        foreign = [p.name for p in entries if p not in doomed and not p.name.startswith(".") and p.name not in ROOT_DIRECTORIES]
        if foreign:
            raise ConfigError(
                f"{artifacts} holds {len(foreign)} director{'y' if len(foreign) == 1 else 'ies'} that ds2ir did not make "
                f"({', '.join(foreign[:10])}), so it is not only an artifacts directory; nothing was removed. Name the "
                f"targets to clean with --target, or pass the right --artifacts DIR.")
    for path in doomed if not dry_run else []:
        shutil.rmtree(path)
    return doomed


def is_target_dir(path: Path) -> bool:
    """Whether ``path`` is a target's artifact directory that ds2ir made: a real directory (no symlink)
    with a valid target name holding ds2ir's mark, stamps or manifest."""
    try:
        check_name(path.name)
    except ConfigError:
        return False
    if path.is_symlink() or not path.is_dir():
        return False
    mark = path / TARGET_MARK
    if mark.is_file() and not mark.is_symlink():
        return mark.read_text(encoding="utf-8", errors="replace").strip() == path.name
    return (path / ".stamps").is_dir() or (path / "manifest.json").is_file()


def _chosen_target_dir(artifacts: Path, name: str, known: Sequence[str]) -> Optional[Path]:
    """The directory ``clean --target name`` removes, None when there is nothing, else a ConfigError."""
    check_name(name, what="--target")
    path = artifacts / name
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link, which ds2ir never makes; nothing was removed. Remove the link "
                          f"yourself if you mean to.")
    if not path.exists():
        if name in known:
            return None
        raise ConfigError(f"'{name}' is not a target of the targets file and {artifacts} has no directory of that name; "
                          f"nothing was removed. Known targets: {', '.join(sorted(known))}.")
    if not is_target_dir(path):
        raise ConfigError(f"{path} is not a target directory ds2ir made (no {TARGET_MARK} mark, stamps or manifest); "
                          f"nothing was removed. Remove it yourself if you mean to.")
    return path
