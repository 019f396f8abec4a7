"""Compare the IR with the TensorFlow graph, window by window, with carried state.

Numpy only: the two runtimes live in different images, so each side streams the same
windows through its model (:func:`stream`) and the results meet here.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ds2ir.model.architecture import Architecture

if TYPE_CHECKING:  # typing.Protocol is Python 3.8+; the freeze image runs 3.7, so only the checker sees it
    from typing import Protocol

    class StreamingModel(Protocol):
        """What :func:`stream` feeds: TF's, OpenVINO's and the float64 model alike."""

        def step(self, window: np.ndarray, state_c: np.ndarray,
                 state_h: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]: ...

#: what every streaming model's ``step(window, state_c, state_h)`` returns, in order
STREAM_OUTPUTS = ("logits", "state_c", "state_h")
#: the IR may be this many times further from the float64 ground truth than TensorFlow's float32 is,
#: per output and window (measured on one AVX2 CPU, its AVX2, AVX and SSE4.1 kernels: at most 2.8)
FIDELITY_FACTOR = 8.0
#: the bound's floor: 8 float32 ulps of a magnitude-1 value (errors are scaled by max(1, |value|));
#: below it every float32 engine is right, even where TF happens to round better
ERROR_FLOOR = 8 * float(np.finfo(np.float32).eps)
#: what a lossy IR may add to the float32 bound, as scaled |Δ| from float64: FP16 weights lose ~3e-3 on the state
LOSSY_ALLOWANCE = {"FP32": 0.0, "FP16": 2e-2}
#: bf16 inference rounds activations to 8 mantissa bits: its error is gated against this allowance
BF16_ALLOWANCE = 1e-1
#: max |Δ| between the numpy features and TF's AudioSpectrogram + Mfcc ops
FEATURES_TOLERANCE = 1e-4


def tolerance_for(ir_precision: str, inference_precision: str, weight_compression: str = "none") -> Optional[float]:
    """What an IR may add to the float32 bound (``fidelity``): 0 for an FP32 IR at f32, the
    rounding of FP16 weights or bf16 activations otherwise.

    None for int8 weights: quantizing seeded random weights moves the state by ~0.2,
    which says nothing about a trained model; their error is reported, not gated, and
    they are judged by transcripts of a trained model (ldc93s1-smoke@int8).
    """
    if weight_compression == "int8":
        return None
    allowance = LOSSY_ALLOWANCE[ir_precision]
    return max(allowance, BF16_ALLOWANCE) if inference_precision == "bf16" else allowance


def scaled_errors(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per window: max |candidate - reference| / max(1, |reference|) over the window's values (inf on a shape mismatch)."""
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        return np.full(ref.shape[0], np.inf)
    n_windows = ref.shape[0]
    return (np.abs(got - ref).reshape(n_windows, -1) / np.maximum(1.0, np.abs(ref)).reshape(n_windows, -1)).max(axis=1)


def fidelity(ground_truth: Mapping[str, np.ndarray], tf: Mapping[str, np.ndarray], ir: Mapping[str, np.ndarray],
             allowance: Optional[float]) -> Dict[str, Any]:
    """The gate: per output and window, the IR's error against float64 within FIDELITY_FACTOR times
    TF's own float32 error against float64 (at least ERROR_FLOOR), plus ``allowance``.

    Both float32 engines round; how much depends on the CPU's vector width, so neither is
    the truth and their difference alone measures the CPU. TF's error on the same window
    says how hard that window is for float32; an IR that computes the graph rounds about
    as much, a wrong one (a weight, a bias, the state) lands orders of magnitude further.
    ``allowance`` None (int8 weights): reported, never failed.
    """
    outputs: Dict[str, Dict[str, Any]] = {}
    for name in STREAM_OUTPUTS:
        ir_error = scaled_errors(ground_truth[name], ir[name])
        tf_error = scaled_errors(ground_truth[name], tf[name])
        bound = np.maximum(FIDELITY_FACTOR * np.maximum(tf_error, ERROR_FLOOR), allowance or 0.0)
        ratio = ir_error / bound
        outputs[name] = {
            "ir_vs_f64": float(ir_error.max()), "tf_vs_f64": float(tf_error.max()),
            "worst_window": int(np.argmax(ratio)), "worst_ratio": float(ratio.max()),
            "per_window_ir_vs_f64": [float(v) for v in ir_error], "per_window_tf_vs_f64": [float(v) for v in tf_error],
            "per_window_bound": [float(v) for v in bound],
        }
    return {
        "rule": f"per output and window: |IR - f64| <= max({FIDELITY_FACTOR:g} * max(|TF - f64|, {ERROR_FLOOR:.3g}), "
                f"{allowance}); errors scaled by max(1, |f64|)",
        "factor": FIDELITY_FACTOR, "floor": ERROR_FLOOR, "allowance": allowance,
        "ir_vs_f64": max(entry["ir_vs_f64"] for entry in outputs.values()),
        "tf_vs_f64": max(entry["tf_vs_f64"] for entry in outputs.values()),
        "worst_ratio": max(entry["worst_ratio"] for entry in outputs.values()),
        "passed": allowance is None or all(entry["worst_ratio"] <= 1.0 for entry in outputs.values()),
        "outputs": outputs,
    }


def fidelity_failures(result: Mapping[str, Any]) -> List[str]:
    """One line per output over its bound: the output, its worst window and both errors."""
    lines = []
    for name, entry in result["outputs"].items():
        if entry["worst_ratio"] > 1.0:
            window = entry["worst_window"]
            lines.append(f"{name} (window {window}): |IR - f64| {entry['per_window_ir_vs_f64'][window]:.3g} > bound "
                         f"{entry['per_window_bound'][window]:.3g} (|TF - f64| {entry['per_window_tf_vs_f64'][window]:.3g})")
    return lines


def stream(model: StreamingModel, windows: np.ndarray, state_c: np.ndarray, state_h: np.ndarray) -> Dict[str, np.ndarray]:
    """Feed every window in order, carrying the state; stack each output per window."""
    collected: Dict[str, List[np.ndarray]] = {name: [] for name in STREAM_OUTPUTS}
    for window in windows:
        outputs = model.step(window, state_c, state_h)
        _, state_c, state_h = outputs
        for name, value in zip(STREAM_OUTPUTS, outputs):
            collected[name].append(value)
    return {name: np.stack(values) for name, values in collected.items()}


def random_inputs(arch: Architecture, seed: int, n_windows: int = 3) -> Dict[str, np.ndarray]:
    """Seeded windows and initial state in the range real MFCC features and states take."""
    rng = np.random.RandomState(seed)
    return {
        "windows": (rng.standard_normal((n_windows,) + arch.input_shape) * 10).astype(np.float32),
        "state_c": rng.standard_normal(arch.state_shape).astype(np.float32),
        "state_h": rng.uniform(-0.5, 0.5, arch.state_shape).astype(np.float32),
    }


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> Dict[str, Dict[str, Any]]:
    """|Δ| per output, overall and per window: absolute, and scaled by max(1, |reference|).

    The scaled error equals the absolute one wherever values are within [-1, 1] (logits,
    h); the LSTM cell state c is an unbounded accumulator, and float32 can only promise
    it a relative precision, so beyond 1 its error is measured relative to its size.
    """
    report: Dict[str, Dict[str, object]] = {}
    for name in STREAM_OUTPUTS:
        ref = np.asarray(reference[name], dtype=np.float64)
        got = np.asarray(candidate[name], dtype=np.float64)
        if ref.shape != got.shape:
            report[name] = {"shape_mismatch": [list(ref.shape), list(got.shape)], "max_abs": float("inf"),
                            "max_scaled": float("inf")}
            continue
        delta = np.abs(ref - got).reshape(ref.shape[0], -1)
        scaled = delta / np.maximum(1.0, np.abs(ref).reshape(ref.shape[0], -1))
        report[name] = {
            "max_abs": float(delta.max()),
            "mean_abs": float(delta.mean()),
            "max_scaled": float(scaled.max()),
            "max_reference": float(np.abs(ref).max()),
            "per_window_max_abs": [float(v) for v in delta.max(axis=1)],
            "per_window_max_scaled": [float(v) for v in scaled.max(axis=1)],
        }
    return report


def worst(report: Mapping[str, Mapping[str, Any]]) -> float:
    """The largest scaled error over all outputs (|IR - TF| in the reports: information, not the gate)."""
    return max(float(entry["max_scaled"]) for entry in report.values())


def utterance_logits(per_window_logits: np.ndarray, valid_steps: int) -> np.ndarray:
    """[n_windows, n_steps, 1, C] per-window logits -> [T, 1, C] over the real steps only."""
    n_windows, n_steps = per_window_logits.shape[:2]
    flat = per_window_logits.reshape((n_windows * n_steps,) + per_window_logits.shape[2:])
    return flat[: (n_windows - 1) * n_steps + valid_steps]


#: errors below this are float32 rounding, whatever their trend: a growing |c| carries its rounding error along
DRIFT_FLOOR = 1e-5


def grows(per_window: List[float], floor: float = DRIFT_FLOOR) -> bool:
    """Whether an error keeps growing over the stream (state drift), not just fluctuating or rounding."""
    if len(per_window) < 4:
        return False
    quarter = max(1, len(per_window) // 4)
    late = float(np.mean(per_window[-quarter:]))
    return late > floor and late > 4 * float(np.mean(per_window[:quarter]))


def file_report(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
                ground_truth: Mapping[str, np.ndarray], valid_steps: int, transcripts: Dict[str, str],
                tolerance: Optional[float], same_transcript: bool = True) -> Dict[str, Any]:
    """One recording's comparison: the fidelity gate against float64, |IR - TF| per output (information),
    drift, both transcripts, pass/fail.

    ``reference`` is TF's outputs, ``candidate`` the IR's, ``ground_truth`` the float64 model's;
    ``tolerance`` is the lossy allowance of :func:`fidelity`. ``same_transcript`` makes
    different transcripts a failure; lossy variants (FP16 or int8 weights, bf16) only report
    them, since near-ties in synthetic logits may flip.
    """
    outputs = compare(reference, candidate)
    gate = fidelity(ground_truth, reference, candidate, tolerance)
    return {
        "windows": int(reference["logits"].shape[0]),
        "valid_steps_in_last_window": int(valid_steps),
        "max_abs": max(float(entry["max_abs"]) for entry in outputs.values()),
        "max_scaled": worst(outputs),
        "ir_vs_f64": gate["ir_vs_f64"],
        "tf_vs_f64": gate["tf_vs_f64"],
        "fidelity": gate,
        "outputs": outputs,
        "state_drift": any(grows(outputs[name]["per_window_max_scaled"]) for name in ("state_c", "state_h")),
        "transcripts": transcripts,
        "transcripts_equal": len(set(transcripts.values())) == 1,
        "passed": gate["passed"] and (len(set(transcripts.values())) == 1 or not same_transcript),
    }


def variant_comparison(reports: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """The verify reports of a target's IR variants (variant -> report.json), file by file: TF's transcript,
    then each variant's error, drift and transcript. The first report is the default IR's."""
    first = next(iter(reports.values()))
    files: Dict[str, Any] = {}
    for name in first["files"]:
        rows = {}
        for variant, report in reports.items():
            entry = report["files"].get(name)
            if entry is None:
                continue
            rows[variant] = {"target": report["target"], "tolerance": report["tolerance"], "max_abs": entry["max_abs"],
                             "max_scaled": entry["max_scaled"], "ir_vs_f64": entry["ir_vs_f64"], "tf_vs_f64": entry["tf_vs_f64"], "state_drift": entry["state_drift"],
                             "transcript": entry["transcripts"]["ir"], "passed": entry["passed"]}
        files[name] = {"source": first["files"][name].get("source"), "tf": first["files"][name]["transcripts"]["tf"],
                       "variants": rows}
    return {"inference_precision": first["inference_precision"], "files": files,
            "passed": all(report["passed"] for report in reports.values())}


def render_variant_comparison(comparison: Mapping[str, Any]) -> str:
    """``variant_comparison`` as markdown: a table per recording, TF's transcript on its first line."""
    parts = [f"IR variants against TensorFlow, {comparison['inference_precision']} inference. "
             f"Errors are max |Δ| / max(1, |f64|) over logits and both states, every window, state carried, against the "
             f"float64 ground truth (TF's own float32 error beside it); |IR - TF| is information.\n"]
    for name, entry in comparison["files"].items():
        parts.append(f"\n### {name}\n\n| IR | target | \\|IR - f64\\| | \\|TF - f64\\| | \\|IR - TF\\| | allowance | state drift "
                     f"| greedy transcript | passed |\n|---|---|---:|---:|---:|---:|---|---|---|\n"
                     f"| TF frozen graph | | | | | | | {entry['tf']} | |\n")
        for variant, row in entry["variants"].items():
            tolerance = "reported" if row["tolerance"] is None else f"{row['tolerance']:g}"
            same = "" if row["transcript"] == entry["tf"] else " (differs from TF)"
            passed = "n/a" if row["tolerance"] is None else "yes" if row["passed"] else "NO"
            parts.append(f"| {variant} | {row['target']} | {row['ir_vs_f64']:.2g} | {row['tf_vs_f64']:.2g} | {row['max_scaled']:.2g} | {tolerance} "
                         f"| {'grows' if row['state_drift'] else 'no'} | {row['transcript']}{same} | {passed} |\n")
    return "".join(parts)


def plot(path: Path, files: Mapping[str, Mapping[str, Any]], logits: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """PNG: per-window max |Δ| per file, and IR logits next to TF's for the first file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ds2ir.atomic import atomic_path

    first = next(iter(logits))
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for name, entry in files.items():
        for output, style in (("logits", "-"), ("state_c", "--"), ("state_h", ":")):
            series = entry["outputs"][output]["per_window_max_abs"]
            axes[0].semilogy(range(len(series)), np.maximum(series, 1e-12), style, label=f"{name} {output}")
    axes[0].set(title="max |IR - TF| per window", xlabel="window", ylabel="max |Δ|")
    axes[0].legend(fontsize=6)
    for axis, side in zip(axes[1:], ("tf", "ir")):
        image = axis.imshow(logits[first][side][:, 0, :].T, aspect="auto", origin="lower", interpolation="nearest")
        axis.set(title=f"{first}: {side.upper()} logits", xlabel="time step", ylabel="class")
        figure.colorbar(image, ax=axis)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(str(tmp), format="png", dpi=80)
    plt.close(figure)
