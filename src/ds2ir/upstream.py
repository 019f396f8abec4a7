"""The freeze stage for ``exporter = "deepspeech"``: DeepSpeech's own ``DeepSpeech.py`` writes the graph.

This is OpenVINO's documented procedure (``python3 DeepSpeech.py --checkpoint_dir ...
--export_dir ...``) run in a freeze image that holds the genuine training code of a
release (``source_release`` of the image in targets.toml). Two halves:

- host: the release's source archive is fetched and verified like the checkpoint
  (:func:`fetch_source`), safely extracted into a generated Docker build context beside
  the package, the image's lock and its pip constraints (:func:`build_context`);
  Dockerfile.upstream installs it with ``pip install -c CONSTRAINTS -e .``.
- image: :func:`export` runs DeepSpeech.py from :data:`SOURCE_DIR`, so its relative
  defaults (``data/alphabet.txt``) resolve, and publishes ``output_graph.pb`` atomically
  where the builtin exporter writes it.
"""
from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

from ds2ir import archive, checkpoint, fetch
from ds2ir.config import Alphabet, ArtifactLayout, ImageSpec, Target
from ds2ir.errors import ArchiveError, FetchError, MissingInputError
from ds2ir.freeze import EXPORTED_GRAPH, run_exporter
from ds2ir.runner import Runner

#: where Dockerfile.upstream puts the release's source tree, and the build context directory it copies
SOURCE_DIR = Path("/opt/deepspeech")
CONTEXT_SOURCE = "source"
#: what makes a tree DeepSpeech's source: the package's setup.py and the training entry point
ENTRY_POINT = "DeepSpeech.py"
REQUIRED_FILES = ("setup.py", ENTRY_POINT)
STAGING = Path("/tmp/ds2ir-upstream-export")
CHECKPOINT_ALPHABET = "alphabet.txt"


# -- host -----------------------------------------------------------------------


def fetch_source(spec: ImageSpec, *, offline: bool = False, trust_on_first_use: bool = False) -> Path:
    """The cached, verified source archive the image installs (fetched on the host, never in a container)."""
    assert spec.source_url is not None, "config.py resolves source_url for every image with source_release"
    try:
        return fetch.fetch(spec.source_url, lock_path=fetch.default_lock_path(), offline=offline,
                           trust_on_first_use=trust_on_first_use)
    except FetchError as exc:
        raise FetchError(
            f"Image '{spec.name}' installs DeepSpeech's training code from release {spec.source_release}'s source "
            f"archive {spec.source_url}. {exc}"
        ) from None


@contextlib.contextmanager
def build_context(spec: ImageSpec, project: Path, source_archive: Path, files: Sequence[Path]) -> Iterator[Path]:
    """A temporary Docker build context: ``files`` of the checkout (the image's inputs: Dockerfile, package,
    lock, constraints) at their paths, and the archive's tree (its top directory stripped) under ``source/``;
    removed afterwards.

    A generated context keeps the archive out of the checkout and out of every other
    image's context; the archive is extracted here with ds2ir's checks, not by Docker.
    """
    assert spec.constraints is not None, "config.py requires constraints with source_release"
    with tempfile.TemporaryDirectory(prefix="ds2ir-context-") as tmp:
        context = Path(tmp)
        source = archive.extract(source_archive, context / CONTEXT_SOURCE)
        missing = [name for name in REQUIRED_FILES if not (source / name).is_file()]
        if missing:
            raise ArchiveError(
                f"The source archive {source_archive} ({spec.source_url}) has no {' or '.join(missing)} at its top "
                f"level, so it is not DeepSpeech's source tree and image '{spec.name}' cannot install it. Check "
                f"source_url of release '{spec.source_release}' in targets.toml and its entry in assets.lock.toml."
            )
        for path in files:
            copy = context / path.relative_to(project)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(str(path), str(copy))
        yield context


# -- freeze image ---------------------------------------------------------------


def export_command(target: Target, checkpoint_dir: Path, export_dir: Path, alphabet_file: Optional[Path]) -> List[str]:
    """``python DeepSpeech.py`` as OpenVINO's guide runs it, plus the flags of the target's architecture.

    Only flags DeepSpeech 0.8.2's util/flags.py defines; n_input and n_context have none
    (config.py refuses other values for this exporter). Without a checkpoint alphabet,
    ``--alphabet_config_path`` keeps its default, data/alphabet.txt of the source tree.
    ``--scorer_path ""``: export needs no language model, but DeepSpeech.py loads the scorer
    its flag names before any mode, and in a GitHub source archive data/lm/kenlm.scorer may
    be a Git LFS pointer, not a scorer.
    """
    command = [sys.executable, ENTRY_POINT, "--checkpoint_dir", str(checkpoint_dir), "--export_dir", str(export_dir),
               "--scorer_path", ""]
    if alphabet_file is not None:
        command += ["--alphabet_config_path", str(alphabet_file)]
    return command + target.architecture.exporter_flags()


def run_export(target: Target, layout: ArtifactLayout, runner: Runner, *, source_dir: Path = SOURCE_DIR,
               staging: Path = STAGING) -> List[str]:
    """Run DeepSpeech.py in ``source_dir`` into ``staging``, publish frozen/output_graph.pb; return the command."""
    if not (source_dir / ENTRY_POINT).is_file():
        raise MissingInputError(
            f"{source_dir / ENTRY_POINT} does not exist: this freeze container was not built from DeepSpeech's source "
            f"(Dockerfile.upstream, from the build context ds2ir generates; docker-compose.yml builds from the checkout "
            f"and cannot). Build the target with 'invoke build --target {target.name}'."
        )
    alphabet_file = layout.checkpoint_dir / CHECKPOINT_ALPHABET
    command = export_command(target, layout.checkpoint_dir, staging,
                             alphabet_file if alphabet_file.is_file() else None)
    run_exporter(command, runner, staging=staging, output=layout.frozen_graph, step="deepspeech export", cwd=source_dir,
                 missing=f"DeepSpeech's exporter ({ENTRY_POINT} in {source_dir}) finished without writing "
                         f"{staging / EXPORTED_GRAPH}, so there is no frozen graph for {target.name}. Its output above "
                         f"says why; check that image '{target.freeze_image.name}' holds release "
                         f"{target.freeze_image.source_release}'s source.")
    return command


def export(target: Target, layout: ArtifactLayout, alphabet: Alphabet, runner: Runner) -> List[str]:
    """Check the checkpoint against the architecture, then export with DeepSpeech.py; return the command."""
    checkpoint.check(checkpoint.find_prefix(layout.checkpoint_dir), target.architecture, alphabet)
    return run_export(target, layout, runner)
