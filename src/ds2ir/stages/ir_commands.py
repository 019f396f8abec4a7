"""The stage commands the convert and app images run (OpenVINO): conversion, the IR-vs-TF check, the IR's side
of `invoke verify`, transcription and scorer packaging. ``python -m ds2ir`` (stages/cli.py) dispatches to them."""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict

import numpy as np

from ds2ir import atomic
from ds2ir.errors import MissingInputError, VerificationError
from ds2ir.model.architecture import Alphabet
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target
from ds2ir.runner import Runner
from ds2ir.stages.recordings import recorded_inputs, zero_state


def convert(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Run Model Optimizer (convert image)."""
    from ds2ir.stages.convert import convert as run_mo

    run_mo(target, layout, Runner())


def check(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream the same windows through the IR (f32); gate its error against float64 by TF's (convert image)."""
    from ds2ir.model.verify import compare, fidelity, fidelity_failures, stream, tolerance_for, worst
    from ds2ir.stages.ov_runtime import OVStreamingModel

    with np.load(str(layout.check_reference)) as data:
        saved = {key: data[key] for key in data.files}
    model = OVStreamingModel(layout.ir_xml, precision="f32")
    outputs = stream(model, saved["windows"], saved["state_c"], saved["state_h"])
    tf_outputs = {k[3:]: v for k, v in saved.items() if k.startswith("tf_")}
    report = compare(tf_outputs, outputs)
    tolerance = tolerance_for(target.ir_precision, "f32", target.weight_compression)
    gate = fidelity({k[4:]: v for k, v in saved.items() if k.startswith("f64_")}, tf_outputs, outputs, tolerance)
    kernels = model.kernels()
    summary: Dict[str, Any] = {"target": target.label, "ir_precision": target.ir_precision, "inference_precision": "f32",
               "windows": int(saved["windows"].shape[0]), "tolerance": tolerance,
               "ir_vs_f64": gate["ir_vs_f64"], "tf_vs_f64": gate["tf_vs_f64"], "worst_ratio": gate["worst_ratio"],
               "max_scaled": worst(report), "max_abs": max(entry["max_abs"] for entry in report.values()),
               "passed": gate["passed"], "fidelity": gate, "outputs": report, "isa": kernels,
               "engines": {"freeze": json.loads(str(saved["engine"])) if "engine" in saved else None,
                           "openvino": {"kernels": kernels, "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")}}}
    atomic.write_json(layout.check_report, summary)
    print(json.dumps({key: summary[key] for key in ("ir_vs_f64", "tf_vs_f64", "worst_ratio", "max_abs", "max_scaled",
                                                     "tolerance", "passed")}))
    if not summary["passed"]:
        raise VerificationError(
            f"The IR of {target.label} does not compute the frozen graph: on {summary['windows']} streamed windows "
            f"{'; '.join(fidelity_failures(gate))} (|IR - TF| {summary['max_abs']:.3g}); the bound is "
            f"{gate['factor']:g} times TensorFlow's own float32 error against the float64 ground truth; "
            f"see {layout.check_report}."
        )


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
        if not layout.check_reference.is_file():
            raise MissingInputError(f"The TF reference {layout.check_reference} does not exist; run the reference "
                                    f"stage first ('invoke build --target {target.label}').")
        with np.load(str(layout.check_reference)) as data:
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
    if args.match_tf and not gate["passed"]:
        raise VerificationError(f"The IR of {target.label} compiles in OpenVINO {described['compiled']} but does not compute "
                                f"the frozen graph there: |IR - TF| {max_scaled:.3g} (scaled), beyond the check's float64 gate "
                                f"(worst ratio {gate['worst_ratio']:.3g}).")


def verify_ir(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream each recording through the IR; gate it against float64 by TF's error, decode both, write report
    and plot (app image: the runtime an application deploys, not the one that converted)."""
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
    from ds2ir.stages.ov_runtime import OVStreamingModel, openvino_version

    arch = target.architecture
    alphabet = target_alphabet(target, layout)
    tolerance = tolerance_for(target.ir_precision, args.precision, target.weight_compression)
    exact = (target.ir_precision, target.weight_compression, args.precision) == ("FP32", "none", "f32")
    model = OVStreamingModel(layout.ir_xml, precision=args.precision)
    files: Dict[str, Dict[str, Any]] = {}
    logits: Dict[str, Dict[str, np.ndarray]] = {}
    for name, data in recorded_inputs(layout):
        with np.load(str(layout.verify_dir / "tf" / f"{name}.npz")) as saved:
            reference = {key: saved[key] for key in STREAM_OUTPUTS}
            truth = {key: saved["f64_" + key] for key in STREAM_OUTPUTS}
            features_max_abs = float(saved["features_max_abs"])
        candidate = stream(model, data["windows"], *zero_state(arch))
        valid = int(data["valid_steps"])
        per_side = {side: utterance_logits(out["logits"], valid) for side, out in (("tf", reference), ("ir", candidate))}
        report = file_report(reference, candidate, ground_truth=truth, valid_steps=valid, tolerance=tolerance,
                             same_transcript=exact,
                             transcripts={side: greedy(value, alphabet) for side, value in per_side.items()})
        report["source"] = str(data["source"])
        report["features_max_abs_vs_tf_ops"] = features_max_abs
        report["passed"] = bool(report["passed"]) and features_max_abs <= FEATURES_TOLERANCE
        files[name], logits[name] = report, per_side
    summary: Dict[str, Any] = {"target": target.label, "ir_precision": target.ir_precision, "inference_precision": args.precision,
               "tolerance": tolerance, "features_tolerance": FEATURES_TOLERANCE, "isa": model.kernels(),
               "openvino": openvino_version(), "passed": all(entry["passed"] for entry in files.values()), "files": files}
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
            f"The IR of {target.label} does not match TensorFlow at {args.precision} ({' | '.join(failures)}); the IR may be "
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
    alphabet = target_alphabet(target, layout)
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
    outputs = stream(model, windows.windows, *zero_state(arch))
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


def package_scorer(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Package a KenLM binary and a vocabulary into a DeepSpeech scorer for the target's alphabet."""
    from ds2ir.model import scorer

    print(json.dumps(scorer.package(args.lm, args.vocabulary, target_alphabet(target, layout), args.output,
                                    alpha=args.default_alpha, beta=args.default_beta)))


def target_alphabet(target: Target, layout: ArtifactLayout) -> Alphabet:
    from ds2ir.stages.freeze.freeze import alphabet_for

    return alphabet_for(layout.checkpoint_dir, target.alphabet)
