"""DeepSpeech's own exporter inside the freeze image: ``DeepSpeech.py --export_dir`` on the checkpoint."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

from ds2ir.errors import MissingInputError
from ds2ir.model.architecture import Alphabet
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import SOURCE_ENTRY_POINT, Target
from ds2ir.runner import Runner
from ds2ir.stages.freeze import checkpoint
from ds2ir.stages.freeze.freeze import EXPORTED_GRAPH, exporter_flags, run_exporter

#: where Dockerfile.upstream puts the release's source tree, and the build context directory it copies
SOURCE_DIR = Path("/opt/deepspeech")
STAGING = Path("/tmp/ds2ir-upstream-export")
CHECKPOINT_ALPHABET = "alphabet.txt"


def export_command(target: Target, checkpoint_dir: Path, export_dir: Path, alphabet_file: Optional[Path]) -> List[str]:
    """``python DeepSpeech.py`` as OpenVINO's guide runs it, plus the flags of the target's architecture.

    Only flags DeepSpeech 0.8.2's util/flags.py defines; n_input and n_context have none
    (config.py refuses other values for this exporter). Without a checkpoint alphabet,
    ``--alphabet_config_path`` keeps its default, data/alphabet.txt of the source tree.
    ``--scorer_path ""``: export needs no language model, but DeepSpeech.py loads the scorer
    its flag names before any mode, and in a GitHub source archive data/lm/kenlm.scorer may
    be a Git LFS pointer, not a scorer.
    """
    command = [sys.executable, SOURCE_ENTRY_POINT, "--checkpoint_dir", str(checkpoint_dir), "--export_dir", str(export_dir),
               "--scorer_path", ""]
    if alphabet_file is not None:
        command += ["--alphabet_config_path", str(alphabet_file)]
    return command + exporter_flags(target.architecture)


def run_export(target: Target, layout: ArtifactLayout, runner: Runner, *, source_dir: Path = SOURCE_DIR,
               staging: Path = STAGING) -> List[str]:
    """Run DeepSpeech.py in ``source_dir`` into ``staging``, publish frozen/output_graph.pb; return the command."""
    if not (source_dir / SOURCE_ENTRY_POINT).is_file():
        raise MissingInputError(
            f"{source_dir / SOURCE_ENTRY_POINT} does not exist: this freeze container was not built from DeepSpeech's source "
            f"(Dockerfile.upstream, from the build context ds2ir generates; docker-compose.yml builds from the checkout "
            f"and cannot). Build the target with 'invoke build --target {target.name}'."
        )
    alphabet_file = layout.checkpoint_dir / CHECKPOINT_ALPHABET
    command = export_command(target, layout.checkpoint_dir, staging,
                             alphabet_file if alphabet_file.is_file() else None)
    run_exporter(command, runner, staging=staging, output=layout.frozen_graph, step="deepspeech export", cwd=source_dir,
                 missing=f"DeepSpeech's exporter ({SOURCE_ENTRY_POINT} in {source_dir}) finished without writing "
                         f"{staging / EXPORTED_GRAPH}, so there is no frozen graph for {target.name}. Its output above "
                         f"says why; check that image '{target.freeze_image.name}' holds release "
                         f"{target.freeze_image.source_release}'s source.")
    return command


def export(target: Target, layout: ArtifactLayout, alphabet: Alphabet, runner: Runner) -> List[str]:
    """Check the checkpoint against the architecture, then export with DeepSpeech.py; return the command."""
    checkpoint.check(checkpoint.find_prefix(layout.checkpoint_dir), target.architecture, alphabet)
    return run_export(target, layout, runner)
