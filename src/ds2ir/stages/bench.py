"""Benchmarks inside the stage containers (``python -m ds2ir bench-*``): each engine streams one real
utterance window by window and writes a JSON result under ``artifacts/bench/results/``."""
from __future__ import annotations

import argparse
import json
import os
import resource
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Tuple

import numpy as np

from ds2ir import atomic
from ds2ir.errors import Ds2irError, MissingInputError
from ds2ir.model.architecture import Architecture
from ds2ir.model.bench import (
    BANDWIDTH_BYTES,
    BANDWIDTH_REPEAT,
    IR_SETTINGS,
    SETTING_ROUNDS,
    bench_dir,
    ir_key,
    ir_weight_traffic,
    merge_runs,
)
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target

if TYPE_CHECKING:
    from ds2ir.model.verify import StreamingModel


class Timings(NamedTuple):
    window_seconds: List[float]
    pass_seconds: List[float]


def time_stream(model: StreamingModel, windows: np.ndarray, state_shape: Tuple[int, ...], repeat: int, *,
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


def _stream_result(key: str, engine: str, utterance: Utterance, timings: Timings, **extra: object) -> Dict[str, object]:
    return {"key": key, "engine": engine, "windows": int(len(utterance.windows)), "audio_seconds": utterance.audio_seconds,
            "window_seconds": timings.window_seconds, "pass_seconds": timings.pass_seconds, **extra}


def bench_ir(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Time the IR per window at an inference precision ('default': the plugin's choice) and a runtime
    setting; a later run of the same key adds its passes (convert image)."""
    from ds2ir.stages.ov_runtime import OVStreamingModel, openvino_version

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
                            variant=target.variant, target=target.label, openvino_version=version,
                            weight_bytes_per_window=ir_weight_traffic(target, precision).per_window)
    _write_result(layout.root, result, load)


def bench_tf(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Time the frozen graph per window with TensorFlow on all cores (freeze image: TF 1.15; convert image: TF 2)."""
    import tensorflow

    from ds2ir.stages.tf_runtime import TFStreamingModel

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


def bench_native(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Time DeepSpeech's native client on output_graph.pb over the whole utterance (freeze image)."""
    try:
        import deepspeech
    except ImportError as exc:
        raise Ds2irError("The deepspeech package is not in this image; it is pinned in locks/freeze-tf1.15.5.in: "
                         "run 'invoke lock' and rebuild the images.") from exc
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


def bench_memory(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Measure memory bandwidth with numpy; a later sweep in the same run keeps the best of all (convert image)."""
    load = os.getloadavg()[0]
    path = bench_dir(layout.root) / "results" / "memory.json"
    sweeps = json.loads(path.read_text())["sweeps"] if path.is_file() else []
    sweeps.append({"load": load, "bandwidth_gb_s": measure_bandwidth()})
    best = {kind: {threads: max(sweep["bandwidth_gb_s"][kind][threads] for sweep in sweeps) for threads in rates}
            for kind, rates in sweeps[0]["bandwidth_gb_s"].items()}
    result = {"key": "memory", "bandwidth_gb_s": best, "sweeps": sweeps, "precision": "-", "threads": _cores()}
    _write_result(layout.root, result, load)


def bench_plot(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
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
