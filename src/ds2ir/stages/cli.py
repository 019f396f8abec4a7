"""``python -m ds2ir``: the stage commands the containers run.

Each command reads its target from the targets file and works under the artifacts
root (``/artifacts`` in the images). The host orchestration (``invoke build``) runs
these through ``docker run``; docker-compose.yml runs the same ones. The commands
themselves live by image: stages/freeze_commands.py (freeze), stages/ir_commands.py
(convert and app), stages/bench.py (bench-*); this module parses the command line.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ds2ir import atomic
from ds2ir.errors import Ds2irError
from ds2ir.model.bench import IR_SETTINGS
from ds2ir.model.layout import CONTAINER_ARTIFACTS, CONTAINER_TARGETS, TARGETS_ENV, ArtifactLayout
from ds2ir.model.targets import INFERENCE_PRECISIONS, Target
from ds2ir.model.targets_file import load_target
from ds2ir.stages import bench, freeze_commands, ir_commands


def freeze_stage(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """The whole freeze service for compose: checkpoint (synthetic targets), freeze, reference."""
    if target.checkpoint == "synthetic":
        freeze_commands.make_checkpoint(target, layout, args)
    freeze_commands.freeze(target, layout, args)
    freeze_commands.reference(target, layout, args)


def convert_stage(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """The whole convert service for compose: convert, then check against the reference."""
    ir_commands.convert(target, layout, args)
    ir_commands.check(target, layout, args)


COMMANDS: Dict[str, Callable[[Target, ArtifactLayout, argparse.Namespace], None]] = {
    "make-checkpoint": freeze_commands.make_checkpoint,
    "train": freeze_commands.train,
    "freeze": freeze_commands.freeze,
    "reference": freeze_commands.reference,
    "convert": ir_commands.convert,
    "check": ir_commands.check,
    "inspect-graph": freeze_commands.inspect_graph,
    "inspect-ir": ir_commands.inspect_ir,
    "verify-tf": freeze_commands.verify_tf,
    "verify-ir": ir_commands.verify_ir,
    "transcribe": ir_commands.transcribe,
    "package-scorer": ir_commands.package_scorer,
    "check-pbmm": freeze_commands.check_pbmm,
    "freeze-stage": freeze_stage,
    "convert-stage": convert_stage,
    "bench-memory": bench.bench_memory,
    "bench-ir": bench.bench_ir,
    "bench-tf": bench.bench_tf,
    "bench-native": bench.bench_native,
    "bench-plot": bench.bench_plot,
}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ds2ir", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, function in COMMANDS.items():
        sub = commands.add_parser(name, help=(function.__doc__ or "").splitlines()[0])
        sub.add_argument("--target", help="target name from targets.toml (default: its default_target), or "
                                          "TARGET@VARIANT for one of its variants")
        sub.add_argument("--artifacts", type=Path, default=CONTAINER_ARTIFACTS, help="artifacts root (default: %(default)s)")
        if name in ("verify-ir", "transcribe"):
            sub.add_argument("--precision", default="f32", choices=INFERENCE_PRECISIONS, help="OpenVINO inference precision hint")
        if name == "bench-ir":
            sub.add_argument("--precision", default="f32", choices=INFERENCE_PRECISIONS + ("default",),
                             help="OpenVINO inference precision hint; 'default' sets none")
            sub.add_argument("--setting", default=IR_SETTINGS[0][0], choices=[key for key, _, _ in IR_SETTINGS],
                             help="runtime setting (default: ds2ir's own)")
        if name in ("bench-ir", "bench-tf", "bench-native"):
            sub.add_argument("--repeat", type=int, default=5, help="timed passes over the utterance (default: %(default)s)")
        if name == "inspect-ir":
            sub.add_argument("--compile", action="store_true", help="also compile the IR for CPU, as an application loads it")
            sub.add_argument("--match-tf", action="store_true",
                             help="also compile it and compare its outputs with the TF reference in this runtime")
        if name == "check-pbmm":
            sub.add_argument("--audio", type=Path, required=True, help="WAV file for the native client")
        if name == "transcribe":
            sub.add_argument("--audio", type=Path, required=True, help="WAV file to transcribe")
            sub.add_argument("--device", default="CPU", help="OpenVINO device (default: %(default)s)")
            sub.add_argument("--scorer", type=Path, help="DeepSpeech scorer package: beam search with its language model")
            sub.add_argument("--beam-width", type=int, help="beam search with this width (default with --scorer: "
                                                            "the model's metadata_beam_width)")
            sub.add_argument("--lm-alpha", type=float, help="language model weight (default: the scorer's)")
            sub.add_argument("--lm-beta", type=float, help="word insertion weight (default: the scorer's)")
        if name == "package-scorer":
            from ds2ir.model.scorer import RELEASE_ALPHA, RELEASE_BETA

            sub.add_argument("--lm", type=Path, required=True, help="KenLM binary (build_binary -v)")
            sub.add_argument("--vocabulary", type=Path, required=True, help="text file of the words, whitespace-separated")
            sub.add_argument("--output", type=Path, required=True, help="the .scorer to write")
            sub.add_argument("--default-alpha", type=float, default=RELEASE_ALPHA, help="alpha stored in the package")
            sub.add_argument("--default-beta", type=float, default=RELEASE_BETA, help="beta stored in the package")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None, *, targets: Optional[Path] = None) -> None:
    """``targets``: the targets file; in the stage images $DS2IR_TARGETS (the mounted one)."""
    args = parse_args(argv)
    try:
        target = load_target(targets or Path(os.environ.get(TARGETS_ENV, CONTAINER_TARGETS)), args.target)
        with atomic.storage_errors(args.artifacts):
            COMMANDS[args.command](target, ArtifactLayout.of(args.artifacts, target), args)
    except Ds2irError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"ds2ir: error: {exc}", file=sys.stderr)
        sys.exit(2)
