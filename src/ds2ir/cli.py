"""``python -m ds2ir``: the stage commands the containers run.

Each command reads its target from the targets file and works under the artifacts
root (``/artifacts`` in the images). The host orchestration (``invoke build``) runs
these through ``docker run``; docker-compose.yml runs the same ones.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ds2ir import atomic
from ds2ir.config import CONTAINER_ARTIFACTS, ArtifactLayout, Target, load_target
from ds2ir.errors import Ds2irError, VerificationError
from ds2ir.runner import Runner

REFERENCE_FILE = "tf_reference.npz"
REPORT_FILE = "report.json"


def make_checkpoint(target: Target, layout: ArtifactLayout) -> None:
    """Write the target's seeded synthetic checkpoint (freeze image)."""
    from ds2ir import checkpoint

    variables = checkpoint.synthetic_variables(target.architecture, target.alphabet, target.seed)
    checkpoint.save(layout.checkpoint_dir, variables, alphabet=target.alphabet, arch=target.architecture)


def freeze(target: Target, layout: ArtifactLayout) -> None:
    """Freeze the checkpoint into output_graph.pb (freeze image)."""
    from ds2ir.freeze import alphabet_for, freeze as freeze_graph

    alphabet = alphabet_for(layout.checkpoint_dir, target.alphabet)
    freeze_graph(layout.checkpoint_dir, layout.frozen_graph, target.architecture, alphabet)


def reference(target: Target, layout: ArtifactLayout) -> None:
    """Stream seeded random windows through the frozen graph; keep inputs and outputs (freeze image)."""
    from ds2ir.tf_runtime import TFStreamingModel
    from ds2ir.verify import random_inputs, stream

    inputs = random_inputs(target.architecture, target.seed)
    model = TFStreamingModel(layout.frozen_graph, target.architecture.n_steps)
    try:
        outputs = stream(model, inputs["windows"], inputs["state_c"], inputs["state_h"])
    finally:
        model.close()
    with atomic.atomic_path(layout.check_dir / REFERENCE_FILE) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **inputs, **{"tf_" + k: v for k, v in outputs.items()})


def convert(target: Target, layout: ArtifactLayout) -> None:
    """Run Model Optimizer (convert image)."""
    from ds2ir.convert import convert as run_mo

    run_mo(target, layout, Runner())


def check(target: Target, layout: ArtifactLayout) -> None:
    """Stream the same windows through the IR (f32) and compare with TF (convert image)."""
    from ds2ir.ov_runtime import OVStreamingModel
    from ds2ir.verify import TOLERANCE, compare, stream, worst

    with np.load(str(layout.check_dir / REFERENCE_FILE)) as data:
        saved = {key: data[key] for key in data.files}
    model = OVStreamingModel(layout.ir_xml, precision="f32")
    outputs = stream(model, saved["windows"], saved["state_c"], saved["state_h"])
    report = compare({k[3:]: v for k, v in saved.items() if k.startswith("tf_")}, outputs)
    tolerance = TOLERANCE[target.ir_precision]
    max_abs = worst(report)
    summary = {"target": target.name, "ir_precision": target.ir_precision, "inference_precision": "f32",
               "windows": int(saved["windows"].shape[0]), "tolerance": tolerance, "max_abs": max_abs,
               "passed": max_abs <= tolerance, "outputs": report}
    atomic.write_json(layout.check_dir / REPORT_FILE, summary)
    print(json.dumps({"max_abs": max_abs, "tolerance": tolerance, "passed": summary["passed"]}))
    if not summary["passed"]:
        raise VerificationError(
            f"The IR of {target.name} differs from the TensorFlow graph by max |Δ| {max_abs:.3g} "
            f"(tolerance {tolerance:g}) on {summary['windows']} streamed windows; see {layout.check_dir / REPORT_FILE}."
        )


def inspect_graph(target: Target, layout: ArtifactLayout) -> None:
    """Print the frozen graph's nodes as JSON (freeze image)."""
    from ds2ir.tf_runtime import graph_node_names

    print(json.dumps(graph_node_names(layout.frozen_graph), sort_keys=True))


def inspect_ir(target: Target, layout: ArtifactLayout) -> None:
    """Print the IR's inputs and outputs with shapes as JSON (convert image)."""
    from ds2ir.ov_runtime import describe

    print(json.dumps(describe(layout.ir_xml), sort_keys=True))


def freeze_stage(target: Target, layout: ArtifactLayout) -> None:
    """The whole freeze service for compose: checkpoint (synthetic targets), freeze, reference."""
    if target.checkpoint == "synthetic":
        make_checkpoint(target, layout)
    freeze(target, layout)
    reference(target, layout)


def convert_stage(target: Target, layout: ArtifactLayout) -> None:
    """The whole convert service for compose: convert, then check against the reference."""
    convert(target, layout)
    check(target, layout)


COMMANDS: Dict[str, Callable[[Target, ArtifactLayout], None]] = {
    "make-checkpoint": make_checkpoint,
    "freeze": freeze,
    "reference": reference,
    "convert": convert,
    "check": check,
    "inspect-graph": inspect_graph,
    "inspect-ir": inspect_ir,
    "freeze-stage": freeze_stage,
    "convert-stage": convert_stage,
}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ds2ir", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, function in COMMANDS.items():
        sub = commands.add_parser(name, help=(function.__doc__ or "").splitlines()[0])
        sub.add_argument("--target", help="target name from targets.toml (default: its default_target)")
        sub.add_argument("--artifacts", type=Path, default=CONTAINER_ARTIFACTS, help="artifacts root (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    try:
        target = load_target(args.target)
        COMMANDS[args.command](target, ArtifactLayout(args.artifacts, target.name))
    except Ds2irError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"ds2ir: error: {exc}", file=sys.stderr)
        sys.exit(2)
