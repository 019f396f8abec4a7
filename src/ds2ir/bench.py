"""Benchmarks: how fast each engine runs the network, next to what the memory bus allows.

DeepSpeech's LSTM multiplies ``[x, h]`` by its whole kernel, ``(2*n_hidden) x (4*n_hidden)``
floats (134 MB at f32 for the release), at every time step. That is far more than any
cache holds, so a window cannot be computed faster than the bytes of weights it streams
(the kernel once per step, the dense layers once per window) divided by the memory
bandwidth: the *bound* every engine's time is divided by.

The parts, by where they run:

- ``python -m ds2ir bench-*`` (registered in cli.py) run in the stage containers: each
  engine streams one real utterance window by window with the state carried and writes a
  JSON result under ``artifacts/bench/results/``; ``bench-memory`` measures bandwidth;
  ``bench-plot`` draws the chart (matplotlib is in the convert image only).
- :class:`Bench` (``invoke bench``) builds, runs those containers, times builds and
  writes ``artifacts/bench/results.{json,md}``.
- Statistics, the bound and the tables are pure functions, unit-tested; the timings
  themselves are figures, never tests.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from ds2ir import atomic, cpu
from ds2ir.config import Architecture, ArtifactLayout, Target
from ds2ir.errors import Ds2irError, MissingInputError

if TYPE_CHECKING:  # the host side only; containers never import the build machinery
    from ds2ir.build import Builder

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


# -- pure: statistics, bound, tables -------------------------------------------


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


# -- containers: timing loops and the bench-* commands ---------------------------


class Timings(NamedTuple):
    window_seconds: List[float]
    pass_seconds: List[float]


def time_stream(model, windows: np.ndarray, state_shape: Tuple[int, ...], repeat: int, *,  # type: ignore[no-untyped-def]
                warm_up: bool = True, clock: Callable[[], float] = time.perf_counter) -> Timings:
    """An untimed pass (lazy allocation, first-inference setup) unless ``warm_up`` is off, then ``repeat``
    timed passes over the utterance, each from a zero state carried from window to window as an application does."""
    per_window: List[float] = []
    per_pass: List[float] = []
    skip = int(warm_up)
    for index in range(repeat + skip):
        state_c = state_h = np.zeros(state_shape, np.float32)
        total = 0.0
        for window in windows:
            started = clock()
            _, state_c, state_h = model.step(window, state_c, state_h)
            elapsed = clock() - started
            total += elapsed
            if index >= skip:
                per_window.append(elapsed)
        if index >= skip:
            per_pass.append(total)
    return Timings(per_window, per_pass)


class Utterance(NamedTuple):
    windows: np.ndarray
    samples: np.ndarray
    audio_seconds: float


def load_utterance(artifacts: Path, arch: Architecture) -> Utterance:
    """The recording the host prepared under bench/inputs."""
    found = sorted((bench_dir(artifacts) / "inputs").glob("*.npz"))
    if not found:
        raise MissingInputError(f"No prepared recording under {bench_dir(artifacts) / 'inputs'}; run 'invoke bench'.")
    with np.load(str(found[0])) as data:
        samples = data["samples"]
        return Utterance(data["windows"], samples, len(samples) / arch.sample_rate)


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _write_result(artifacts: Path, result: Dict[str, Any], load_before: float) -> None:
    """Add what every engine reports (peak RSS of this process, load) and write results/<key>.json;
    a timing result already there from an earlier container of this run gets these passes added."""
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    result["load"] = [load_before, os.getloadavg()[0]]
    result["cores"] = _cores()
    path = bench_dir(artifacts) / "results" / f"{result['key']}.json"
    if "pass_seconds" in result and path.is_file():
        result = merge_runs(json.loads(path.read_text()), result)
    atomic.write_json(path, result)
    print(json.dumps({key: result[key] for key in ("key", "precision", "threads", "peak_rss_mb", "load")}))


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


def _stream_result(key: str, engine: str, utterance: Utterance, timings: Timings, **extra: object) -> Dict[str, object]:
    return {"key": key, "engine": engine, "windows": int(len(utterance.windows)), "audio_seconds": utterance.audio_seconds,
            "window_seconds": timings.window_seconds, "pass_seconds": timings.pass_seconds, **extra}


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


def bench_ir(target: Target, layout: ArtifactLayout, args) -> None:  # type: ignore[no-untyped-def]
    """Time the IR per window at an inference precision ('default': the plugin's choice) and a runtime
    setting; a later run of the same key adds its passes (convert image)."""
    from ds2ir.ov_runtime import OVStreamingModel, openvino_version

    load = os.getloadavg()[0]
    utterance = load_utterance(layout.root, target.architecture)
    label, options = {key: (label, options) for key, label, options in IR_SETTINGS}[args.setting]
    model = OVStreamingModel(layout.ir_xml, precision=None if args.precision == "default" else args.precision, **options)
    timings = time_stream(model, utterance.windows, target.architecture.state_shape, args.repeat)
    used = model.settings()
    version = openvino_version().split("-")[0]
    engine = f"OpenVINO {version} {target.variant} IR, {args.precision} hint"
    precision = used["INFERENCE_PRECISION_HINT"]
    result = _stream_result(ir_key(target.variant, args.precision, args.setting),
                            engine if args.setting == IR_SETTINGS[0][0] else f"{engine}, {label}", utterance, timings,
                            precision=precision, threads=used["INFERENCE_NUM_THREADS"], settings=used, options=options,
                            variant=target.variant, target=target.name, openvino_version=version,
                            weight_bytes_per_window=ir_weight_traffic(target, precision).per_window)
    _write_result(layout.root, result, load)


def bench_tf(target: Target, layout: ArtifactLayout, args) -> None:  # type: ignore[no-untyped-def]
    """Time the frozen graph per window with TensorFlow on all cores (freeze image: TF 1.15; convert image: TF 2)."""
    import tensorflow

    from ds2ir.tf_runtime import TFStreamingModel

    load = os.getloadavg()[0]
    utterance = load_utterance(layout.root, target.architecture)
    threads = _cores()
    model = TFStreamingModel(layout.frozen_graph, target.architecture.n_steps, threads=threads)
    try:
        timings = time_stream(model, utterance.windows, target.architecture.state_shape, args.repeat)
    finally:
        model.close()
    version = tensorflow.__version__
    result = _stream_result(f"tf-{version}", f"TensorFlow {version} frozen graph", utterance, timings,
                            precision="f32", threads=threads)
    _write_result(layout.root, result, load)


def bench_native(target: Target, layout: ArtifactLayout, args) -> None:  # type: ignore[no-untyped-def]
    """Time DeepSpeech's native client on output_graph.pb over the whole utterance (freeze image)."""
    try:
        import deepspeech
    except ImportError:
        raise Ds2irError("The deepspeech package is not in this image; it is pinned in locks/freeze-tf1.15.5.in: "
                         "run 'invoke lock' and rebuild the images.") from None
    load = os.getloadavg()[0]
    utterance = load_utterance(layout.root, target.architecture)
    pcm = np.clip(np.round(utterance.samples.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    model = deepspeech.Model(str(layout.frozen_graph))
    passes = []
    for index in range(args.repeat + 1):  # the first call builds TF's executors: untimed, as for the others
        started = time.perf_counter()
        model.stt(pcm)
        if index:
            passes.append(time.perf_counter() - started)
    version = deepspeech.version()
    result = {"key": f"native-{version}", "engine": f"deepspeech {version} native client",
              "windows": int(len(utterance.windows)), "audio_seconds": utterance.audio_seconds, "pass_seconds": passes,
              "precision": "f32", "threads": f"{_cores()} (TF default)", "beam_width": int(model.beamWidth())}
    _write_result(layout.root, result, load)


def _best_rate(kernel: Callable[[int, int], object], n_items: int, threads: int, repeat: int) -> float:
    """Fewest seconds for ``kernel`` over [0, n_items) split across ``threads`` (numpy releases the GIL)."""
    edges = np.linspace(0, n_items, threads + 1).astype(int)
    best = float("inf")
    for _ in range(repeat):
        workers = [threading.Thread(target=kernel, args=(int(lo), int(hi))) for lo, hi in zip(edges[:-1], edges[1:])]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        best = min(best, time.perf_counter() - started)
    return best


def measure_bandwidth(n_bytes: int = BANDWIDTH_BYTES, repeat: int = BANDWIDTH_REPEAT) -> Dict[str, Dict[str, float]]:
    """Best-of-``repeat`` GB/s of a STREAM copy (2 bytes moved per byte copied) and of a read-only
    sweep (what weight streaming does), on 1 thread and on every core."""
    source = np.ones(n_bytes // 8, np.uint64)
    target = np.zeros_like(source)

    def copy(lo: int, hi: int) -> None:
        np.copyto(target[lo:hi], source[lo:hi])

    def read(lo: int, hi: int) -> None:
        np.bitwise_or.reduce(source[lo:hi])

    out: Dict[str, Dict[str, float]] = {"copy": {}, "read": {}}
    for threads in sorted({1, _cores()}):
        out["copy"][str(threads)] = 2 * n_bytes / _best_rate(copy, source.size, threads, repeat) / 1e9
        out["read"][str(threads)] = n_bytes / _best_rate(read, source.size, threads, repeat) / 1e9
    return out


def bench_memory(target: Target, layout: ArtifactLayout, args) -> None:  # type: ignore[no-untyped-def]
    """Measure memory bandwidth with numpy; a later sweep in the same run keeps the best of all (convert image)."""
    load = os.getloadavg()[0]
    path = bench_dir(layout.root) / "results" / "memory.json"
    sweeps = json.loads(path.read_text())["sweeps"] if path.is_file() else []
    sweeps.append({"load": load, "bandwidth_gb_s": measure_bandwidth()})
    best = {kind: {threads: max(sweep["bandwidth_gb_s"][kind][threads] for sweep in sweeps) for threads in rates}
            for kind, rates in sweeps[0]["bandwidth_gb_s"].items()}
    result = {"key": "memory", "bandwidth_gb_s": best, "sweeps": sweeps, "precision": "-", "threads": _cores()}
    _write_result(layout.root, result, load)


def bench_plot(target: Target, layout: ArtifactLayout, args) -> None:  # type: ignore[no-untyped-def]
    """Draw artifacts/bench/bench.png from results.json (convert image: matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = bench_dir(layout.root)
    data = json.loads((directory / "results.json").read_text())
    arch = target.architecture
    figure, axes = plt.subplots(1, 2, figsize=(max(16.0, 1.25 * (len(data["rows"]) + len(data["settings_rows"]))), 6),
                                gridspec_kw={"width_ratios": [len(data["rows"]), len(data["settings_rows"])]})
    panels = ((axes[0], data["rows"], f"{target.name}: each engine in its own container"),
              (axes[1], data["settings_rows"], f"f32 IR runtime settings, {SETTING_ROUNDS} alternated containers each"))
    for axis, rows, title in panels:
        labels = ["\n".join(textwrap.wrap(row["engine"].replace(f"OpenVINO {data['openvino']} ", ""), 14))
                  + f"\n({row['precision']}){' *' if row['derived'] else ''}" for row in rows]
        medians = np.array([row["window"]["median"] for row in rows]) * 1e3
        low = medians - np.array([row["window"]["min"] for row in rows]) * 1e3
        high = np.array([row["window"]["p90"] for row in rows]) * 1e3 - medians
        positions = np.arange(len(rows))
        axis.bar(positions, medians, color="tab:blue", label="median")
        axis.errorbar(positions, medians, yerr=[low, high], fmt="none", ecolor="black", capsize=4, label="min .. p90")
        axis.scatter(positions, [row["bound"] * 1e3 for row in rows], marker="_", s=600, color="tab:red", zorder=3,
                     label="bound: the row's weight bytes / bandwidth")
        axis.set_xticks(positions)
        axis.set_xticklabels(labels, fontsize=6.5)
        axis.set_title(title, fontsize=10)
    axes[0].set_ylabel(f"ms per {arch.n_steps}-step window ({arch.n_steps * arch.feature_win_step_ms} ms of audio)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"DeepSpeech inference per window (OpenVINO {data['openvino']}): {data['machine']['cpu']}, {data['machine']['cores']} cores, "
                    f"{data['bandwidth_gb_s']:.1f} GB/s, load {data['machine']['load_at_start']:.1f}")
    figure.text(0.01, 0.01, "* whole-utterance stt() time / windows (features and beam search included)", fontsize=7)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    with atomic.atomic_path(directory / "bench.png") as tmp:
        figure.savefig(str(tmp), format="png", dpi=90)
    plt.close(figure)
    print(directory / "bench.png")


# -- host: invoke bench --------------------------------------------------------------


class Engine(NamedTuple):
    """One container run: which target's artifacts, which image, which command."""

    builder: "Builder"
    image: str  # "freeze" or "convert"
    command: str
    extra: Tuple[str, ...] = ()


class Bench:
    """`invoke bench`: build, time every engine and every variant of the IR in its container, time builds,
    write the tables. ``variants`` are builders of the target's variants (TargetsFile.variants_of)."""

    def __init__(self, builder: "Builder", *, variants: Sequence["Builder"], audio: Path, repeat: int, cold: bool):
        self.builder = builder
        self.variants = list(variants)
        self.audio = audio
        self.repeat = repeat
        self.cold = cold
        self.directory = bench_dir(builder.artifacts)
        self.say = builder.say

    def run(self) -> Path:
        """Everything in one run; returns artifacts/bench/results.md."""
        from ds2ir.build import prepare_recordings

        if not self.variants:
            self.say(f"[{self.builder.target.name}] no target in targets.toml differs from it only in "
                     f"ir_precision, lstm or weight_compression: no other IR variant is benchmarked")
        for builder in [self.builder, *self.variants]:
            builder.build()
        prepare_recordings([self.audio], self.directory / "inputs", self.builder.target.architecture)
        shutil.rmtree(self.directory / "results", ignore_errors=True)
        for engine in self._engines():
            self._container(engine)
        costs = self.build_costs()
        return self._report(costs)

    def _engines(self) -> List[Engine]:
        repeat = ("--repeat", str(self.repeat))
        memory = Engine(self.builder, "convert", "bench-memory")  # before and after the engines: the best counts
        settings = [key for key, _, _ in IR_SETTINGS]
        engines = [memory]
        for round_ in range(SETTING_ROUNDS):  # rotated, so that no setting always follows the same one
            for setting in settings[round_:] + settings[:round_]:
                engines.append(Engine(self.builder, "convert", "bench-ir", ("--precision", "f32", "--setting", setting) + repeat))
        engines.append(Engine(self.builder, "convert", "bench-ir", ("--precision", "default") + repeat))
        for variant in self.variants:  # each at f32, to compare with the default IR, and at the CPU's default
            for precision in ("f32", "default"):
                engines.append(Engine(variant, "convert", "bench-ir", ("--precision", precision) + repeat))
        return engines + [
            Engine(self.builder, "freeze", "bench-tf", repeat),
            Engine(self.builder, "convert", "bench-tf", repeat),
            Engine(self.builder, "freeze", "bench-native", repeat),
            memory,
        ]

    def _container(self, engine: Engine, capture: bool = False) -> str:
        from ds2ir.config import targets_file

        builder = engine.builder
        return builder.docker.run_stage(
            step=engine.command, image=builder.images()[engine.image],
            args=[engine.command, "--target", builder.target.name, *engine.extra],
            artifacts=builder.artifacts, targets=targets_file(), capture=capture,
            platform=builder.image_platform(engine.image),
        )

    def build_costs(self) -> Dict[str, object]:
        """Warm rebuild from an empty artifacts directory (what `invoke clean` leaves), no-op rebuild,
        per-stage seconds, image sizes; cold no-cache image builds with --cold."""
        from ds2ir.build import Builder

        docker = self.builder.docker
        costs: Dict[str, object] = {}
        if self.cold:
            costs.update(self._cold_builds())
        scratch = self.directory / "rebuild"
        shutil.rmtree(scratch, ignore_errors=True)
        rebuild = Builder(self.builder.target, project=self.builder.project, artifacts=scratch, docker=docker)
        rebuild.images()  # untimed: images are warm by definition (another engineer's edit may need new ones)
        for label in ("warm rebuild after clean, s", "no-op rebuild, s"):
            started = time.monotonic()
            rebuild.build()
            costs[label] = time.monotonic() - started
        for stamp in sorted(rebuild.layout.stamps_dir.glob("*.json")):
            costs[f"stage {stamp.stem}, s"] = float(json.loads(stamp.read_text())["seconds"])
        shutil.rmtree(scratch)
        for stage, tag in self.builder.images().items():
            costs[f"{stage} image size, MB"] = docker.image_size(tag) / 1e6
        return costs

    def _cold_builds(self) -> Dict[str, object]:
        """Each stage image built with --no-cache under a tag of its own, timed, then that tag removed."""
        docker = self.builder.docker
        costs: Dict[str, object] = {}
        for spec in (self.builder.target.freeze_image, self.builder.target.convert_image):
            tag = f"ds2ir-bench/{spec.name}:cold"
            started = time.monotonic()
            docker.build_stage_image(spec, self.builder.project, tag, no_cache=True, source=self.builder.source_archive(spec))
            costs[f"cold {spec.stage} image build (--no-cache), s"] = time.monotonic() - started
            docker.call([docker.executable, "image", "rm", tag], step="remove cold image", quiet=True)
        return costs

    def _report(self, costs: Dict[str, object]) -> Path:
        arch, n_classes = self.builder.target.architecture, self.builder.target.n_classes
        raw = {path.stem: json.loads(path.read_text()) for path in sorted((self.directory / "results").glob("*.json"))}
        memory = raw.pop("memory")
        measured = memory["bandwidth_gb_s"]
        bandwidth = max(value for kind in measured.values() for value in kind.values()) * 1e9
        settings = {ir_key(self.builder.target.variant, "f32", key): label for key, label, _ in IR_SETTINGS}
        rows = [summarize(raw[key], arch, n_classes, bandwidth) for key in sorted(raw, key=table_order)
                if key == IR_KEY or key not in settings]
        settings_rows = [summarize(raw[key], arch, n_classes, bandwidth)._replace(engine=label)
                         for key, label in settings.items()]
        host = cpu.describe()
        machine = {"cpu": host["model"], "vector_extensions": host["vector_extensions"], "cores": os.cpu_count(),
                   "memory_gib": round(memory_gib(Path("/proc/meminfo").read_text()), 1),
                   "load_at_start": float(memory["sweeps"][0]["load"])}
        builders = [self.builder, *self.variants]
        data = {
            "target": self.builder.target.name, "audio": str(self.audio), "repeat": self.repeat, "machine": machine,
            "bandwidth_gb_s": bandwidth / 1e9, "bandwidth_measured_gb_s": measured,
            "bound_ms": {p: bound_seconds(arch, n_classes, p, bandwidth) * 1e3 for p in ("f32", "bf16")},
            "weight_traffic_bytes": weight_traffic(arch, n_classes, WEIGHT_BYTES["f32"])._asdict(),
            "openvino": str(raw.get(IR_KEY, {}).get("openvino_version", "")),
            "variants": {b.target.variant: {"target": b.target.name, "ir_bin_mb": b.layout.ir_bin.stat().st_size / 1e6,
                                            "frozen_graph_sha256": b.output_hashes().get("frozen/output_graph.pb"),
                                            "weight_traffic_f32_bytes": ir_weight_traffic(b.target, "f32").per_window}
                         for b in builders},
            "rows": [dict(row._asdict(), window=row.window._asdict(), rtf=row.rtf._asdict()) for row in rows],
            "settings_rows": [dict(row._asdict(), window=row.window._asdict(), rtf=row.rtf._asdict()) for row in settings_rows],
            "ratios": ratios(rows), "build_costs": costs, "raw": raw,
        }
        atomic.write_json(self.directory / "results.json", data)
        self._container(Engine(self.builder, "convert", "bench-plot"))
        text = (
            f"# ds2ir bench: {self.builder.target.name}\n\n"
            f"{machine['cpu']} ({', '.join(machine['vector_extensions']) or 'vector extensions unknown'}), "
            f"{machine['cores']} cores, {machine['memory_gib']} GiB; load average "
            f"{machine['load_at_start']:.2f} at the start. Audio: {self.audio.name}, "
            f"{rows[0].rtf.n if rows else 0} timed passes.\n\n"
            f"Memory bandwidth, best of {BANDWIDTH_REPEAT} x {len(memory['sweeps'])} sweeps: copy {render_rates(measured['copy'])}, "
            f"read {render_rates(measured['read'])}; the bound uses {bandwidth / 1e9:.1f} GB/s: "
            f"{data['bound_ms']['f32']:.1f} ms per window with f32 weights, {data['bound_ms']['bf16']:.1f} ms with bf16.\n\n"
            + render_table(rows) + "\n" + render_ratios(data["ratios"])
            + "\nIR variants (targets.toml, docs/variants.md):\n\n" + render_variants(data["variants"], bandwidth)
            + f"\nRuntime settings of the f32 IR, each in {SETTING_ROUNDS} containers, alternated:\n\n"
            + render_table(settings_rows) + "\n" + render_build_costs(costs)
        )
        atomic.write_bytes(self.directory / "results.md", text.encode("utf-8"))
        return self.directory / "results.md"
