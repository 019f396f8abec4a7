"""The freeze stage for ``exporter = "coqui-stt"``: Coqui STT's own exporter writes the graph.

Runs in a freeze image holding ``coqui-stt-training`` (its TensorFlow 1.15.4). Coqui STT
1.4.0 keeps DeepSpeech's variable names, node names and GRAPH_VERSION 6, so ds2ir's
checkpoint check, synthetic checkpoints, reference stage and mo arguments serve it as
they are; only the graph comes from ``python -m coqui_stt_training.export``. That
exporter defaults to TFLite, so ``--export_tflite false`` asks for the frozen
``output_graph.pb``, which is then published atomically.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List

from ds2ir.errors import MissingInputError
from ds2ir.model.architecture import Alphabet
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target
from ds2ir.runner import Runner
from ds2ir.stages.freeze import checkpoint
from ds2ir.stages.freeze.freeze import EXPORTED_GRAPH, exporter_flags, run_exporter

EXPORT_MODULE = "coqui_stt_training.export"
STAGING = Path("/tmp/ds2ir-export")


def export_command(target: Target, checkpoint_dir: Path, alphabet_file: Path, export_dir: Path) -> List[str]:
    """Coqui's export CLI (coqpit flags) with the target's architecture and feature settings."""
    return [
        sys.executable, "-m", EXPORT_MODULE,
        "--checkpoint_dir", str(checkpoint_dir),
        "--alphabet_config_path", str(alphabet_file),
        "--export_dir", str(export_dir),
        "--export_tflite", "false",
        *exporter_flags(target.architecture),
    ]


def export(target: Target, layout: ArtifactLayout, alphabet: Alphabet, runner: Runner) -> List[str]:
    """Check the checkpoint, run Coqui's exporter and publish frozen/output_graph.pb; return the command."""
    prefix = checkpoint.find_prefix(layout.checkpoint_dir)
    checkpoint.check(prefix, target.architecture, alphabet)
    alphabet_file = layout.checkpoint_dir / "alphabet.txt"
    if not alphabet_file.is_file():
        raise MissingInputError(f"Coqui STT's exporter needs the checkpoint's alphabet, {alphabet_file}, which does not exist.")
    command = export_command(target, layout.checkpoint_dir, alphabet_file, STAGING)
    run_exporter(command, runner, staging=STAGING, output=layout.frozen_graph, step="coqui-stt export",
                 missing=f"Coqui STT's exporter finished without writing {STAGING / EXPORTED_GRAPH}.")
    return command
