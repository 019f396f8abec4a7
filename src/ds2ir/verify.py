"""Compare the IR with the TensorFlow graph, window by window, with carried state.

Numpy only: the two runtimes live in different images, so each side streams the same
windows through its model (:func:`stream`) and the results meet here.
"""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np

from ds2ir.config import Architecture

#: what every streaming model's ``step(window, state_c, state_h)`` returns, in order
STREAM_OUTPUTS = ("logits", "state_c", "state_h")
#: max |Δ| allowed between IR and TF, per IR precision (FP16 weights lose ~3e-3 on the state)
TOLERANCE = {"FP32": 1e-5, "FP16": 2e-2}


def stream(model, windows: np.ndarray, state_c: np.ndarray, state_h: np.ndarray) -> Dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    """Feed every window in order, carrying the state; stack each output per window."""
    collected: Dict[str, list] = {name: [] for name in STREAM_OUTPUTS}
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


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> Dict[str, Dict[str, object]]:
    """Max and mean |Δ| per output, overall and per window."""
    report: Dict[str, Dict[str, object]] = {}
    for name in STREAM_OUTPUTS:
        ref = np.asarray(reference[name], dtype=np.float64)
        got = np.asarray(candidate[name], dtype=np.float64)
        if ref.shape != got.shape:
            report[name] = {"shape_mismatch": [list(ref.shape), list(got.shape)], "max_abs": float("inf")}
            continue
        delta = np.abs(ref - got).reshape(ref.shape[0], -1)
        report[name] = {
            "max_abs": float(delta.max()),
            "mean_abs": float(delta.mean()),
            "per_window_max_abs": [float(v) for v in delta.max(axis=1)],
        }
    return report


def worst(report: Mapping[str, Mapping[str, object]]) -> float:
    return max(float(entry["max_abs"]) for entry in report.values())  # type: ignore[arg-type]
