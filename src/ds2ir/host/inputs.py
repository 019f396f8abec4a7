"""What a target's stages read that no stage makes: the release checkpoint (fetched, verified, by its digest
or by agreement with the release's pinned .pbmm), the checkpoint or training data shipped in the checkout,
the user's or the release's .pbmm, and the release's scorer. All of it is fetched and checked on the host."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, Optional

from ds2ir import atomic
from ds2ir.errors import CheckpointError, FetchError, MissingInputError
from ds2ir.host import archive, digests, fetch
from ds2ir.host.assets_lock import LockEntry, read_lock, write_lock
from ds2ir.host.project import Project
from ds2ir.host.stamps import Hasher
from ds2ir.model import pbmm
from ds2ir.model.architecture import model_variables
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target


class TargetInputs:
    """The inputs of one target's first stage, put into its artifact directory (never in a dry run)."""

    def __init__(self, target: Target, layout: ArtifactLayout, *, project: Project, hasher: Hasher,
                 say: Callable[[str], None], dry_run: bool = False, offline: bool = False,
                 trust_on_first_use: bool = False, model: Optional[Path] = None):
        self.target = target
        self.layout = layout
        self.project = project
        self.hasher = hasher
        self.say = say
        self.dry_run = dry_run
        self.offline = offline
        self.trust_on_first_use = trust_on_first_use
        self.model = model
        #: the checkpoint archive extracted without a digest, to be verified by agreement after the freeze stage
        self.unverified: Optional[Path] = None

    def require(self) -> None:
        """Release targets: fetch (verified, cached) and extract the checkpoint unless it is there.

        Trained targets: copy the recording and transcript where the train stage sees them.
        Checkout targets: copy the checkpoint shipped in the checkout (locked data).
        """
        if self.dry_run:
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
        if self.unverified_marker.is_file():  # an interrupted verification by agreement: start it again
            shutil.rmtree(str(self.layout.checkpoint_dir), ignore_errors=True)
            self.unverified_marker.unlink()
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
                self.unverified = archive_path
                atomic.write_bytes(self.unverified_marker, url.encode())
            else:
                archive_path = fetch.fetch(url, lock_path=lock, cache=self.project.cache, offline=self.offline,
                                           trust_on_first_use=self.trust_on_first_use)
        except FetchError as exc:
            raise FetchError(
                f"Target '{self.target.name}' needs the DeepSpeech {self.target.release.name} checkpoint {url}. {exc} "
                f"Alternatively extract the release's files into {self.layout.checkpoint_dir}; to build without "
                f"the release, use '--target synthetic-{self.target.release.name}'."
            ) from exc
        archive.extract(archive_path, self.layout.checkpoint_dir)
        self.say(f"[{self.target.name}] checkpoint: extracted {archive_path.name} into {self.layout.checkpoint_dir}")

    def _agreement_possible(self, url: str, lock: Path) -> bool:
        """Whether a checkpoint without a digest can be verified by agreement: its release's .pbmm is pinned."""
        entries = read_lock(lock)
        model_url = self.target.release.model_url
        return (not self.trust_on_first_use and not entries.get(url, LockEntry()).sha256
                and model_url is not None and bool(entries.get(model_url, LockEntry()).sha256))

    def verify_by_agreement(self) -> None:
        """Compare every weight of the frozen checkpoint with the pinned .pbmm's: bitwise equal pins the
        checkpoint's digest in the lock; any difference refuses it and removes what it left."""
        archive_path = self.unverified
        assert archive_path is not None, "only after require() extracted an unverified checkpoint"
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
        self.unverified_marker.unlink()
        self.unverified = None

    @property
    def unverified_marker(self) -> Path:
        """Present while an extracted checkpoint awaits verification by agreement."""
        return self.layout.target_dir / ".unverified-checkpoint"

    def discard_unverified(self, stamp: Path) -> None:
        """Remove an unverified checkpoint, what was frozen from it (and the first stage's ``stamp``) and its download."""
        archive_path = self.unverified
        assert archive_path is not None
        shutil.rmtree(str(self.layout.checkpoint_dir), ignore_errors=True)
        for path in (self.layout.frozen_graph, self.layout.frozen_pbmm, stamp,
                     archive_path, self.unverified_marker):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self.unverified = None

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
