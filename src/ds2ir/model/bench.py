"""Benchmark figures, pure: statistics, the memory-bandwidth bound per window, and the tables.

DeepSpeech's LSTM multiplies ``[x, h]`` by its whole kernel at every time step: far more bytes
than any cache holds, so a window cannot be computed faster than the weights it streams divided
by the memory bandwidth, the *bound* every engine's time is divided by. Timings are figures, never tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ds2ir.model.architecture import Architecture
from ds2ir.model.targets import Target

BENCH_DIR = "bench"
#: bytes one weight takes at the precision an engine computes in
WEIGHT_BYTES = {"f32": 4, "bf16": 2, "f16": 2}
#: working set of the bandwidth sweep: 8x a 32 MB L3, so every pass goes to DRAM
BANDWIDTH_BYTES = 256 << 20
BANDWIDTH_REPEAT = 100
#: the row the ratios are about: the IR as `invoke transcribe` and `invoke verify` run it
IR_KEY = "ir-fp32-f32"


def bench_dir(artifacts: Path) -> Path:
    """``artifacts/bench``: inputs, per-engine results, tables and chart (not a target)."""
    return artifacts / BENCH_DIR


class Stats(NamedTuple):
    """Summary of repeated timings (seconds); median and p90 as numpy computes them."""

    median: float
    p90: float
    min: float
    n: int


def stats(samples: Sequence[float]) -> Stats:
    if not len(samples):
        raise ValueError("no samples to summarize")
    values = np.asarray(samples, dtype=np.float64)
    return Stats(float(np.median(values)), float(np.percentile(values, 90)), float(values.min()), int(values.size))


class WeightTraffic(NamedTuple):
    """Bytes of weights one window streams from memory."""

    lstm_per_step: int
    lstm_per_window: int  # the hoisted input projection: read once per window
    dense_per_window: int
    n_steps: int

    @property
    def per_window(self) -> int:
        return self.n_steps * self.lstm_per_step + self.lstm_per_window + self.dense_per_window


def weight_traffic(arch: Architecture, n_classes: int, bytes_per_weight: int, *, lstm: str = "fused",
                   lstm_bytes_per_weight: Optional[int] = None) -> WeightTraffic:
    """The five dense kernels once per window (biases are negligible) and the LSTM kernel: whole at
    every step (``fused``, as mo makes BlockLSTM), or its input half once per window and its
    recurrent half at every step (``hoisted``). The LSTM's weights may be held at another width
    than the dense ones (int8 compression of the default IR leaves the LSTM loop alone)."""
    h = arch.n_hidden
    lstm_bytes = bytes_per_weight if lstm_bytes_per_weight is None else lstm_bytes_per_weight
    dense = arch.window_width * arch.n_input * h + 3 * h * h + h * n_classes  # layers 1, 2, 3, 5, 6
    half = h * (4 * h) * lstm_bytes  # the input half W_x or the recurrent half W_h of the kernel
    if lstm == "hoisted":
        return WeightTraffic(half, half, dense * bytes_per_weight, arch.n_steps)
    return WeightTraffic(2 * half, 0, dense * bytes_per_weight, arch.n_steps)


def ir_weight_traffic(target: Target, precision: str) -> WeightTraffic:
    """What a window of ``target``'s IR streams at an inference ``precision``: the CPU plugin holds
    f32 and FP16-compressed weights at the inference precision, int8 weights as int8, and NNCF
    compresses the LSTM only where it is plain MatMuls (the hoisted graph)."""
    held = WEIGHT_BYTES[precision]
    int8 = target.weight_compression == "int8"
    return weight_traffic(target.architecture, target.n_classes, 1 if int8 else held, lstm=target.lstm,
                          lstm_bytes_per_weight=1 if int8 and target.lstm == "hoisted" else held)


def bound_seconds(arch: Architecture, n_classes: int, precision: str, bandwidth: float) -> float:
    """The least time a window of the default (fused) graph can take at ``bandwidth`` bytes/s with
    weights held at ``precision``."""
    return weight_traffic(arch, n_classes, WEIGHT_BYTES[precision]).per_window / bandwidth


class Row(NamedTuple):
    """One engine's line in the table; times in seconds."""

    key: str
    engine: str
    precision: str
    threads: str
    window: Stats
    rtf: Stats
    bound: float
    peak_rss_mb: float
    load: float
    derived: bool  # per-window time is utterance time / windows (the native client has no per-window call)

    @property
    def x_bound(self) -> Tuple[float, float]:
        """(median, min) as multiples of the bound."""
        return self.window.median / self.bound, self.window.min / self.bound


def summarize(result: Mapping[str, Any], arch: Architecture, n_classes: int, bandwidth: float) -> Row:
    """A container's raw result -> its table row."""
    windows = int(result["windows"])
    passes = [float(s) for s in result["pass_seconds"]]
    per_window = result.get("window_seconds")
    derived = per_window is None
    samples = [p / windows for p in passes] if per_window is None else [float(s) for s in per_window]
    precision = str(result["precision"])
    streamed = result.get("weight_bytes_per_window")  # IR rows say what their variant streams
    return Row(
        key=str(result["key"]), engine=str(result["engine"]), precision=precision, threads=str(result["threads"]),
        window=stats(samples), rtf=stats([p / float(result["audio_seconds"]) for p in passes]),
        bound=float(streamed) / bandwidth if streamed else bound_seconds(arch, n_classes, precision, bandwidth),
        peak_rss_mb=float(result["peak_rss_mb"]), load=float(result["load"][1]), derived=derived,
    )


#: the order of IR variants in the tables: the default, its lossy twins, then the hoisted graph's
VARIANT_ORDER = ("fp32", "fp16", "int8", "hoisted-fp32", "hoisted-fp16", "hoisted-int8")


def table_order(key: str) -> Tuple[int, int, int, str]:
    """The IR as ds2ir runs it first, then each variant (f32 hint, then the CPU's default), TensorFlow,
    the native client."""
    if not key.startswith("ir-"):
        return (2 if key.startswith("tf-") else 3), 0, 0, key
    variant, precision = key[len("ir-"):], ""
    for hint in ("-f32", "-bf16", "-default"):
        if hint in variant:
            variant, _, rest = variant.partition(hint)
            precision = hint + rest
    rank = VARIANT_ORDER.index(variant) if variant in VARIANT_ORDER else len(VARIANT_ORDER)
    return (0 if key == IR_KEY else 1), rank, (0 if precision == "-f32" else 1), key


def ratios(rows: Sequence[Row]) -> Dict[str, float]:
    """The IR (FP32 at f32) against the others: per-window medians, RTF for the native client, and the bound;
    then how much faster each other variant runs at f32 than it."""
    by_key = {row.key: row for row in rows}
    ir = by_key.get(IR_KEY)
    if ir is None:
        return {}
    out = {"IR / bound": ir.x_bound[0]}
    for row in rows:
        if row.key.startswith("ir-") and row.key.endswith("-f32") and row.key != IR_KEY:
            out[f"speed-up of {row.engine} over the default IR"] = ir.window.median / row.window.median
        elif row.key.startswith("tf-"):
            out[f"IR / {row.engine}"] = ir.window.median / row.window.median
        elif row.key.startswith("native-"):
            out[f"IR / {row.engine} (RTF)"] = ir.rtf.median / row.rtf.median
    return out


def _ms(seconds: float) -> str:
    """Milliseconds: one decimal, three where a small target's window takes under 1 ms."""
    return f"{seconds * 1e3:.1f}" if seconds >= 1e-3 else f"{seconds * 1e3:.3f}"


def render_table(rows: Sequence[Row]) -> str:
    """The engines as a markdown table (ms per 16-step window, RTF, multiples of the bound)."""
    lines = [
        "| engine | precision used | threads | ms/window median | p90 | min | RTF median | bound ms | x bound median | x bound min | peak RSS MB | load |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mark = " *" if row.derived else ""
        x_median, x_min = row.x_bound
        lines.append(
            f"| {row.engine}{mark} | {row.precision} | {row.threads} | {_ms(row.window.median)} | {_ms(row.window.p90)} "
            f"| {_ms(row.window.min)} | {row.rtf.median:.3f} | {_ms(row.bound)} | {x_median:.2f} | {x_min:.2f} "
            f"| {row.peak_rss_mb:.0f} | {row.load:.2f} |"
        )
    if any(row.derived for row in rows):
        lines.append("")
        lines.append("\\* whole-utterance `stt()` time / windows: includes features and the CTC beam search.")
    return "\n".join(lines) + "\n"


def render_ratios(values: Dict[str, float]) -> str:
    return "\n".join(f"- {name}: {value:.2f}" for name, value in values.items()) + "\n"


def render_rates(by_threads: Mapping[str, float]) -> str:
    """``{"1": 28.2, "2": 37.2}`` -> '28.2 GB/s on 1 thread, 37.2 GB/s on 2 threads'."""
    ordered = sorted(by_threads.items(), key=lambda item: int(item[0]))
    return ", ".join(f"{rate:.1f} GB/s on {n} thread{'s' if int(n) > 1 else ''}" for n, rate in ordered)


def render_build_costs(costs: Dict[str, object]) -> str:
    """Build costs as a markdown table: what was measured, in seconds or MB."""
    lines = ["| build cost | value |", "|---|---:|"]
    for name, value in costs.items():
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        lines.append(f"| {name} | {shown} |")
    return "\n".join(lines) + "\n"


def render_variants(variants: Mapping[str, Mapping[str, Any]], bandwidth: float) -> str:
    """The IR variants side by side: target, size of the weights file, what a window streams at f32 and
    the bound that puts on it, and which frozen graph each was converted from."""
    lines = ["| variant | target | IR .bin MB | weights per window at f32, GB | bound at f32, ms | frozen graph |",
             "|---|---|---:|---:|---:|---|"]
    for variant, entry in variants.items():
        streamed = float(entry["weight_traffic_f32_bytes"])
        lines.append(f"| {variant} | {entry['target']} | {float(entry['ir_bin_mb']):.0f} | {streamed / 1e9:.2f} "
                     f"| {_ms(streamed / bandwidth)} | {str(entry['frozen_graph_sha256'])[:12]} |")
    return "\n".join(lines) + "\n"


def memory_gib(meminfo: str) -> float:
    """MemTotal of /proc/meminfo in GiB."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1 << 20)
    raise ValueError("no MemTotal line")


def merge_runs(earlier: Mapping[str, Any], later: Dict[str, Any]) -> Dict[str, Any]:
    """One engine's timings from several containers: passes appended, the highest peak RSS, the load
    from the first one's start to the last one's end."""
    merged = dict(later)
    for key in ("window_seconds", "pass_seconds"):
        if key in later:
            merged[key] = list(earlier[key]) + list(later[key])
    merged["peak_rss_mb"] = max(float(earlier["peak_rss_mb"]), float(later["peak_rss_mb"]))
    merged["load"] = [earlier["load"][0], later["load"][1]]
    merged["containers"] = int(earlier.get("containers", 1)) + 1
    return merged


#: runtime settings of the f32 IR: (key, label, OVStreamingModel options). The first is ds2ir's, the second
#: what it ran before issue 8; each runs in its own containers, alternated (docs/benchmarks.md).
IR_SETTINGS: Tuple[Tuple[str, str, Dict[str, Any]], ...] = (
    ("ds2ir", "ds2ir: weights copied, threads unpinned", {}),
    ("openvino-defaults", "OpenVINO defaults: weights mmapped, threads pinned", {"mmap_weights": True, "pin_threads": True}),
    ("pinned", "weights copied, threads pinned", {"pin_threads": True}),
    ("1-thread", "ds2ir on 1 thread", {"threads": 1}),
)


#: containers per setting: alternating them spreads the machine's changing load, and each process's memory
#: placement, over all of them
SETTING_ROUNDS = 3


def ir_key(variant: str, precision: str, setting: str = IR_SETTINGS[0][0]) -> str:
    """The result key of an IR row: ``ir-fp32-f32``, ``ir-hoisted-int8-default``, ``ir-fp32-f32-pinned``, ..."""
    key = f"ir-{variant}-{precision}"
    return key if setting == IR_SETTINGS[0][0] else f"{key}-{setting}"
