"""``python -m ds2ir``: the stage commands the containers run.

Each command reads its target from the targets file and works under the artifacts
root (``/artifacts`` in the images). The host orchestration (``invoke build``) runs
these through ``docker run``; docker-compose.yml runs the same ones.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ds2ir import atomic
from ds2ir.errors import Ds2irError, MissingInputError, VerificationError
from ds2ir.model.architecture import Alphabet, Architecture
from ds2ir.model.bench import IR_SETTINGS
from ds2ir.model.layout import CONTAINER_ARTIFACTS, CONTAINER_TARGETS, TARGETS_ENV, ArtifactLayout
from ds2ir.model.targets import INFERENCE_PRECISIONS, Target
from ds2ir.model.targets_file import load_target
from ds2ir.runner import Runner
from ds2ir.stages import bench

REFERENCE_FILE = "tf_reference.npz"
REPORT_FILE = "report.json"


def make_checkpoint(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Write the target's seeded synthetic checkpoint (freeze image)."""
    from ds2ir.stages.freeze import checkpoint

    variables = checkpoint.synthetic_variables(target.architecture, target.alphabet, target.seed)
    checkpoint.save(layout.checkpoint_dir, variables, alphabet=target.alphabet, arch=target.architecture)


def train(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Overfit the architecture on the target's recording; save the checkpoint (freeze image)."""
    from ds2ir.stages.freeze.train import train_checkpoint

    assert target.training is not None, "only trained targets have a train stage"
    result = train_checkpoint(
        layout.checkpoint_dir, wav=layout.training_dir / "audio.wav", transcript_file=layout.training_dir / "transcript.txt",
        arch=target.architecture, alphabet=target.alphabet, seed=target.seed,
        epochs=target.training.epochs, learning_rate=target.training.learning_rate,
    )
    atomic.write_json(layout.training_report, result._asdict())
    print(json.dumps(result._asdict(), sort_keys=True))


def freeze(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Freeze the checkpoint into output_graph.pb with the target's exporter (or unpack the target's .pbmm),
    and memory-map it into output_graph.pbmm (freeze image)."""
    from ds2ir.model import pbmm
    from ds2ir.stages.freeze.freeze import alphabet_for
    from ds2ir.stages.freeze.freeze import freeze as freeze_graph

    alphabet = alphabet_for(layout.checkpoint_dir, target.alphabet)
    if target.checkpoint == "pbmm":
        pbmm.unpack_file(layout.model_file, layout.frozen_graph)
    elif target.exporter == "coqui-stt":
        from ds2ir.stages.freeze import coqui

        coqui.export(target, layout, alphabet, Runner())
    elif target.exporter == "deepspeech":
        from ds2ir.stages.freeze import upstream

        upstream.export(target, layout, alphabet, Runner())
    else:
        freeze_graph(layout.checkpoint_dir, layout.frozen_graph, target.architecture, alphabet, lstm=target.lstm)
    pbmm.pack_file(layout.frozen_graph, layout.frozen_pbmm)


def reference(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream seeded random windows through the frozen graph and its float64 ground truth; keep inputs, outputs
    and the kernels this CPU gives TF and numpy (freeze image)."""
    from ds2ir.model import cpu
    from ds2ir.model.verify import random_inputs, stream
    from ds2ir.stages import ground_truth
    from ds2ir.stages.tf_runtime import TFStreamingModel

    inputs = random_inputs(target.architecture, target.seed)
    model = TFStreamingModel(layout.frozen_graph, target.architecture.n_steps)
    try:
        outputs = stream(model, inputs["windows"], inputs["state_c"], inputs["state_h"])
    finally:
        model.close()
    exact = stream(ground_truth.from_frozen_graph(layout.frozen_graph, target.architecture), inputs["windows"],
                   inputs["state_c"], inputs["state_h"])
    host = cpu.describe()
    engine = {"cpu": host, "tensorflow": cpu.tensorflow_gemm_isa(host["vector_extensions"]),  # type: ignore[arg-type]
              "numpy_openblas": cpu.openblas_core()}
    with atomic.atomic_path(layout.check_dir / REFERENCE_FILE) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **inputs, **{"tf_" + k: v for k, v in outputs.items()},
                     **{"f64_" + k: v for k, v in exact.items()}, engine=np.array(json.dumps(engine, sort_keys=True)))


def convert(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Run Model Optimizer (convert image)."""
    from ds2ir.stages.convert import convert as run_mo

    run_mo(target, layout, Runner())


def check(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream the same windows through the IR (f32); gate its error against float64 by TF's (convert image)."""
    from ds2ir.model.verify import compare, fidelity, fidelity_failures, stream, tolerance_for, worst
    from ds2ir.stages.ov_runtime import OVStreamingModel

    with np.load(str(layout.check_dir / REFERENCE_FILE)) as data:
        saved = {key: data[key] for key in data.files}
    model = OVStreamingModel(layout.ir_xml, precision="f32")
    outputs = stream(model, saved["windows"], saved["state_c"], saved["state_h"])
    tf_outputs = {k[3:]: v for k, v in saved.items() if k.startswith("tf_")}
    report = compare(tf_outputs, outputs)
    tolerance = tolerance_for(target.ir_precision, "f32", target.weight_compression)
    gate = fidelity({k[4:]: v for k, v in saved.items() if k.startswith("f64_")}, tf_outputs, outputs, tolerance)
    kernels = model.kernels()
    summary = {"target": target.name, "ir_precision": target.ir_precision, "inference_precision": "f32",
               "windows": int(saved["windows"].shape[0]), "tolerance": tolerance,
               "ir_vs_f64": gate["ir_vs_f64"], "tf_vs_f64": gate["tf_vs_f64"], "worst_ratio": gate["worst_ratio"],
               "max_scaled": worst(report), "max_abs": max(entry["max_abs"] for entry in report.values()),
               "passed": gate["passed"], "fidelity": gate, "outputs": report, "isa": kernels,
               "engines": {"freeze": json.loads(str(saved["engine"])) if "engine" in saved else None,
                           "openvino": {"kernels": kernels, "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")}}}
    atomic.write_json(layout.check_dir / REPORT_FILE, summary)
    print(json.dumps({key: summary[key] for key in ("ir_vs_f64", "tf_vs_f64", "worst_ratio", "max_abs", "max_scaled",
                                                     "tolerance", "passed")}))
    if not summary["passed"]:
        raise VerificationError(
            f"The IR of {target.name} does not compute the frozen graph: on {summary['windows']} streamed windows "
            f"{'; '.join(fidelity_failures(gate))} (|IR - TF| {summary['max_abs']:.3g}); the bound is "
            f"{gate['factor']:g} times TensorFlow's own float32 error against the float64 ground truth; "
            f"see {layout.check_dir / REPORT_FILE}."
        )


def inspect_graph(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Print the frozen graph's nodes as JSON (freeze image)."""
    from ds2ir.stages.tf_runtime import graph_node_names

    print(json.dumps(graph_node_names(layout.frozen_graph), sort_keys=True))


def inspect_ir(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Print the IR's inputs and outputs with shapes as JSON; --compile also compiles it for CPU (convert image).

    --match-tf also streams the check's windows through the IR in this image's runtime and
    compares them with the TF reference (without touching the check's report): how the load
    matrix shows that an IR computes the same in a runtime it was not made for.
    """
    from ds2ir.model.verify import compare, fidelity, stream, tolerance_for, worst
    from ds2ir.stages.ov_runtime import OVStreamingModel, compile_on_cpu, describe

    described: Dict[str, object] = dict(describe(layout.ir_xml))
    if args.compile or args.match_tf:
        described["compiled"] = compile_on_cpu(layout.ir_xml)
    if args.match_tf:
        if not (layout.check_dir / REFERENCE_FILE).is_file():
            raise MissingInputError(f"The TF reference {layout.check_dir / REFERENCE_FILE} does not exist; run the reference "
                                    f"stage first ('invoke build --target {target.name}').")
        with np.load(str(layout.check_dir / REFERENCE_FILE)) as data:
            saved = {key: data[key] for key in data.files}
        outputs = stream(OVStreamingModel(layout.ir_xml, precision="f32"), saved["windows"], saved["state_c"], saved["state_h"])
        tf_outputs = {k[3:]: v for k, v in saved.items() if k.startswith("tf_")}
        report = compare(tf_outputs, outputs)
        tolerance = tolerance_for(target.ir_precision, "f32", target.weight_compression)
        gate = fidelity({k[4:]: v for k, v in saved.items() if k.startswith("f64_")}, tf_outputs, outputs, tolerance)
        max_scaled = worst(report)
        described["vs_tf"] = {"max_abs": max(entry["max_abs"] for entry in report.values()), "max_scaled": max_scaled,
                              "worst_ratio": gate["worst_ratio"], "passed": gate["passed"]}
    print(json.dumps(described, sort_keys=True))
    if args.match_tf and not described["vs_tf"]["passed"]:  # type: ignore[index]
        raise VerificationError(f"The IR of {target.name} compiles in OpenVINO {described['compiled']} but does not compute "
                                f"the frozen graph there: |IR - TF| {max_scaled:.3g} (scaled), beyond the check's float64 gate "
                                f"(worst ratio {gate['worst_ratio']:.3g}).")


def verify_tf(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream each prepared recording through the frozen graph and its float64 ground truth; check features
    against TF's ops (freeze image)."""
    from ds2ir.model.verify import stream
    from ds2ir.stages import ground_truth, tf_features
    from ds2ir.stages.tf_runtime import TFStreamingModel

    arch = target.architecture
    model = TFStreamingModel(layout.frozen_graph, arch.n_steps)
    exact_model = ground_truth.from_frozen_graph(layout.frozen_graph, arch)
    try:
        with atomic.atomic_dir(layout.verify_dir / "tf") as out:
            for name, data in _verify_inputs(layout):
                outputs = stream(model, data["windows"], *_zero_state(arch))
                exact = stream(exact_model, data["windows"], *_zero_state(arch))
                delta = tf_features.max_abs_difference(data["samples"], arch)
                with open(out / f"{name}.npz", "wb") as handle:
                    np.savez(handle, features_max_abs=np.float64(delta), **outputs, **{"f64_" + k: v for k, v in exact.items()})
    finally:
        model.close()


def verify_ir(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream each recording through the IR; gate it against float64 by TF's error, decode both, write report
    and plot (convert image)."""
    from ds2ir.model.decode import greedy
    from ds2ir.model.verify import (
        FEATURES_TOLERANCE,
        FIDELITY_FACTOR,
        STREAM_OUTPUTS,
        fidelity_failures,
        file_report,
        plot,
        stream,
        tolerance_for,
        utterance_logits,
    )
    from ds2ir.stages.ov_runtime import OVStreamingModel

    arch = target.architecture
    alphabet = _alphabet(target, layout)
    tolerance = tolerance_for(target.ir_precision, args.precision, target.weight_compression)
    exact = (target.ir_precision, target.weight_compression, args.precision) == ("FP32", "none", "f32")
    model = OVStreamingModel(layout.ir_xml, precision=args.precision)
    files: Dict[str, Dict[str, object]] = {}
    logits: Dict[str, Dict[str, np.ndarray]] = {}
    for name, data in _verify_inputs(layout):
        with np.load(str(layout.verify_dir / "tf" / f"{name}.npz")) as saved:
            reference = {key: saved[key] for key in STREAM_OUTPUTS}
            truth = {key: saved["f64_" + key] for key in STREAM_OUTPUTS}
            features_max_abs = float(saved["features_max_abs"])
        candidate = stream(model, data["windows"], *_zero_state(arch))
        valid = int(data["valid_steps"])
        per_side = {side: utterance_logits(out["logits"], valid) for side, out in (("tf", reference), ("ir", candidate))}
        report = file_report(reference, candidate, ground_truth=truth, valid_steps=valid, tolerance=tolerance,
                             same_transcript=exact,
                             transcripts={side: greedy(value, alphabet) for side, value in per_side.items()})
        report["source"] = str(data["source"])
        report["features_max_abs_vs_tf_ops"] = features_max_abs
        report["passed"] = bool(report["passed"]) and features_max_abs <= FEATURES_TOLERANCE
        files[name], logits[name] = report, per_side
    summary = {"target": target.name, "ir_precision": target.ir_precision, "inference_precision": args.precision,
               "tolerance": tolerance, "features_tolerance": FEATURES_TOLERANCE, "isa": model.kernels(),
               "passed": all(entry["passed"] for entry in files.values()), "files": files}
    atomic.write_json(layout.verify_dir / "report.json", summary)
    plot(layout.verify_dir / "report.png", files, logits)
    failures = []
    for name, entry in files.items():
        print(f"{name}: |IR-f64| {entry['ir_vs_f64']:.3g}, |TF-f64| {entry['tf_vs_f64']:.3g} "
              f"(worst {entry['fidelity']['worst_ratio']:.2g} of the bound), |IR-TF| {entry['max_abs']:.3g} "
              f"(scaled {entry['max_scaled']:.3g}), features |numpy-TF| {entry['features_max_abs_vs_tf_ops']:.3g}, "
              f"TF '{entry['transcripts']['tf']}' / IR '{entry['transcripts']['ir']}': {'ok' if entry['passed'] else 'FAILED'}")
        if not entry["passed"]:
            reasons = fidelity_failures(entry["fidelity"])
            if entry["features_max_abs_vs_tf_ops"] > FEATURES_TOLERANCE:
                reasons.append(f"features |numpy - TF ops| {entry['features_max_abs_vs_tf_ops']:.3g} > {FEATURES_TOLERANCE:g}")
            if exact and not entry["transcripts_equal"]:
                reasons.append(f"transcripts differ (TF '{entry['transcripts']['tf']}', IR '{entry['transcripts']['ir']}')")
            failures.append(f"{name}: {'; '.join(reasons)}")
    if failures:
        raise VerificationError(
            f"The IR of {target.name} does not match TensorFlow at {args.precision} ({' | '.join(failures)}); the IR may be "
            f"{FIDELITY_FACTOR:g} times further from the float64 ground truth than TF (plus {tolerance}); "
            f"see {layout.verify_dir / 'report.json'}."
        )


def transcribe(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Transcribe a WAV with the IR as an application would; print the text and real-time factor (app image).

    Greedy decoding by default; DeepSpeech's beam search with --beam-width and/or --scorer
    (the beam width defaulting to the model's metadata_beam_width, as in the native client).
    """
    import time

    from ds2ir.model.decode import beam_search, check_options, greedy
    from ds2ir.model.features import windows_for_file
    from ds2ir.model.verify import stream, utterance_logits
    from ds2ir.stages.ov_runtime import OVStreamingModel, openvino_version

    check_options(scorer=args.scorer, beam_width=args.beam_width, lm_alpha=args.lm_alpha, lm_beta=args.lm_beta)
    arch = target.architecture
    alphabet = _alphabet(target, layout)
    beam_width = args.beam_width or (arch.beam_width if args.scorer else 0)
    decoder: Dict[str, object] = {"decoder": "beam search", "beam_width": beam_width} if beam_width else {"decoder": "greedy"}
    lm = None
    if args.scorer:
        from ds2ir.model import scorer

        lm = scorer.load(args.scorer, alphabet, alpha=args.lm_alpha, beta=args.lm_beta)
        decoder.update(scorer=args.scorer.name, lm_alpha=round(lm.alpha, 6), lm_beta=round(lm.beta, 6))
    model = OVStreamingModel(layout.ir_xml, device=args.device, precision=args.precision)
    started = time.perf_counter()
    _, windows = windows_for_file(args.audio, arch)
    outputs = stream(model, windows.windows, *_zero_state(arch))
    decoding = time.perf_counter()
    probs = utterance_logits(outputs["logits"], windows.valid_steps)
    text = beam_search(probs, alphabet, beam_width=beam_width, scorer=lm) if beam_width else greedy(probs, alphabet)
    finished = time.perf_counter()
    seconds = finished - started
    audio_seconds = windows.n_steps_total * arch.feature_win_step_ms / 1000
    print(text)
    print(json.dumps({"transcript": text, "audio_seconds": round(audio_seconds, 3), "seconds": round(seconds, 4),
                      "real_time_factor": round(seconds / audio_seconds, 5), "decode_seconds": round(finished - decoding, 4),
                      "device": args.device, "precision": args.precision, "windows": int(len(windows.windows)),
                      "openvino": openvino_version(), **decoder}))


def check_pbmm(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Prove output_graph.pbmm: unpacked, its constants equal output_graph.pb's bit for bit, and DeepSpeech's
    native client transcribes --audio alike from both files (freeze image)."""
    import deepspeech
    import tensorflow.compat.v1 as tf

    from ds2ir.model import pbmm
    from ds2ir.model.audio import read_wav

    unpacked, frozen = tf.GraphDef(), tf.GraphDef()
    unpacked.ParseFromString(pbmm.unpack(layout.frozen_pbmm.read_bytes(), str(layout.frozen_pbmm)))
    frozen.ParseFromString(layout.frozen_graph.read_bytes())
    constants = {graph: {node.name: tf.make_ndarray(node.attr["value"].tensor) for node in graph_def.node if node.op == "Const"}
                 for graph, graph_def in (("pbmm", unpacked), ("pb", frozen))}
    differing = sorted(name for name in set(constants["pb"]) | set(constants["pbmm"])
                       if not _same_bits(constants["pb"].get(name), constants["pbmm"].get(name)))
    samples = read_wav(args.audio, sample_rate=target.architecture.sample_rate)
    pcm = np.clip(np.round(samples.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    transcripts = {kind: deepspeech.Model(str(path)).stt(pcm) for kind, path in (("pb", layout.frozen_graph),
                                                                                   ("pbmm", layout.frozen_pbmm))}
    result = {"constants": len(constants["pb"]), "memory_mapped": len(pbmm.read_directory(
                  layout.frozen_pbmm.read_bytes(), str(layout.frozen_pbmm))) - 1,
              "differing_constants": differing, "graph_def_identical": unpacked == frozen,
              "transcripts": transcripts, "native_client": deepspeech.version()}
    print(json.dumps(result, sort_keys=True))
    if differing or transcripts["pb"] != transcripts["pbmm"]:
        raise VerificationError(f"{layout.frozen_pbmm} does not hold the graph of {layout.frozen_graph}: constants "
                                f"{differing or 'equal'}, native client transcripts {transcripts}.")


def _same_bits(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    """Equal dtype, shape and bytes (strings compared as bytes: an object array's buffer holds pointers)."""
    if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
        return False
    return a.tolist() == b.tolist() if a.dtype == object else a.tobytes() == b.tobytes()


def package_scorer(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Package a KenLM binary and a vocabulary into a DeepSpeech scorer for the target's alphabet."""
    from ds2ir.model import scorer

    print(json.dumps(scorer.package(args.lm, args.vocabulary, _alphabet(target, layout), args.output,
                                    alpha=args.default_alpha, beta=args.default_beta)))


def _verify_inputs(layout: ArtifactLayout):  # type: ignore[no-untyped-def]
    """(name, arrays) for each recording the host prepared under verify/inputs."""
    for path in sorted((layout.verify_dir / "inputs").glob("*.npz")):
        with np.load(str(path)) as data:
            yield path.stem, {key: data[key] for key in data.files}


def _zero_state(arch: Architecture):  # type: ignore[no-untyped-def]
    return np.zeros(arch.state_shape, np.float32), np.zeros(arch.state_shape, np.float32)


def _alphabet(target: Target, layout: ArtifactLayout) -> Alphabet:
    from ds2ir.stages.freeze.freeze import alphabet_for

    return alphabet_for(layout.checkpoint_dir, target.alphabet)


def freeze_stage(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """The whole freeze service for compose: checkpoint (synthetic targets), freeze, reference."""
    if target.checkpoint == "synthetic":
        make_checkpoint(target, layout, args)
    freeze(target, layout, args)
    reference(target, layout, args)


def convert_stage(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """The whole convert service for compose: convert, then check against the reference."""
    convert(target, layout, args)
    check(target, layout, args)


COMMANDS: Dict[str, Callable[[Target, ArtifactLayout, argparse.Namespace], None]] = {
    "make-checkpoint": make_checkpoint,
    "train": train,
    "freeze": freeze,
    "reference": reference,
    "convert": convert,
    "check": check,
    "inspect-graph": inspect_graph,
    "inspect-ir": inspect_ir,
    "verify-tf": verify_tf,
    "verify-ir": verify_ir,
    "transcribe": transcribe,
    "package-scorer": package_scorer,
    "check-pbmm": check_pbmm,
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
        sub.add_argument("--target", help="target name from targets.toml (default: its default_target)")
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
            COMMANDS[args.command](target, ArtifactLayout(args.artifacts, target.name), args)
    except Ds2irError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"ds2ir: error: {exc}", file=sys.stderr)
        sys.exit(2)
