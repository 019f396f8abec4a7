"""The pure parts of the benchmarks: statistics, the bandwidth bound, tables. Timings are not tested."""
from pathlib import Path

import numpy as np
import pytest

from ds2ir.model import bench
from ds2ir.model.architecture import Architecture
from ds2ir.model.targets_file import TargetsFile
from ds2ir.stages.bench import time_stream

RELEASE = Architecture()  # n_hidden 2048, 16 steps, 19 x 26 window
N_CLASSES = 29

TARGETS = """
default_target = "base"

[images.freeze]
stage = "freeze"
dockerfile = "Dockerfile.freeze"
base_image = "python:3.7-slim"
python = "3.7"
lock = "locks/freeze.txt"

[images.convert]
stage = "convert"
dockerfile = "Dockerfile.convert"
base_image = "python:3.11-slim"
python = "3.11"
lock = "locks/convert.txt"

[releases."0.8.2"]
graph_version = 6
checkpoint_url = "https://example.invalid/checkpoint.tar.gz"
source_url = "https://example.invalid/source.tar.gz"
n_hidden = 2048

[targets.base]
release = "0.8.2"
checkpoint = "synthetic"
seed = 82
freeze_image = "freeze"
convert_image = "convert"
ir_precision = "FP32"

[targets.base-half]
description = "only the IR precision differs"
extends = "base"
ir_precision = "FP16"

[targets.small]
extends = "base"
n_hidden = 64

[targets.base-int8]
extends = "base"
weight_compression = "int8"

[targets.base-fast-int8]
extends = "base-int8"
lstm = "hoisted"

[targets.other-seed-half]
extends = "base"
seed = 1
ir_precision = "FP16"
"""


@pytest.fixture()
def targets(tmp_path: Path) -> TargetsFile:
    path = tmp_path / "targets.toml"
    path.write_text(TARGETS)
    return TargetsFile.load(path)


def stream_result(key: str, window_ms: list, **extra: object) -> dict:
    return {"key": key, "engine": key, "windows": 2, "audio_seconds": 0.64, "precision": "f32", "threads": 2,
            "window_seconds": [ms / 1e3 for ms in window_ms],
            "pass_seconds": [sum(window_ms[i:i + 2]) / 1e3 for i in range(0, len(window_ms), 2)],
            "peak_rss_mb": 500.0, "load": [1.0, 1.5], **extra}


def test_stats_are_median_p90_and_min():
    summary = bench.stats([5.0, 1.0, 3.0, 2.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert summary == bench.Stats(median=5.5, p90=pytest.approx(9.1), min=1.0, n=10)


def test_stats_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        bench.stats([])


def test_weight_traffic_of_the_release_architecture():
    traffic = bench.weight_traffic(RELEASE, N_CLASSES, 4)
    assert traffic.lstm_per_step == 4096 * 8192 * 4  # the (2h) x (4h) kernel, 134 MB
    assert traffic.dense_per_window == (494 * 2048 + 3 * 2048 * 2048 + 2048 * 29) * 4
    assert traffic.per_window == 16 * traffic.lstm_per_step + traffic.dense_per_window
    assert traffic.per_window == pytest.approx(2.2e9, rel=0.01)


def test_hoisted_lstm_reads_the_input_half_of_the_kernel_once_per_window():
    fused = bench.weight_traffic(RELEASE, N_CLASSES, 4)
    hoisted = bench.weight_traffic(RELEASE, N_CLASSES, 4, lstm="hoisted")
    half = 2048 * 8192 * 4
    assert hoisted.lstm_per_step == half and hoisted.lstm_per_window == half
    assert fused.per_window - hoisted.per_window == 15 * half  # W_x read once instead of 16 times
    assert hoisted.per_window == pytest.approx(1.2e9, rel=0.02)


def test_ir_weight_traffic_follows_the_variant(targets: TargetsFile):
    def per_window(name: str, precision: str = "f32") -> int:
        return bench.ir_weight_traffic(targets.target(name), precision).per_window

    f32 = bench.weight_traffic(RELEASE, N_CLASSES, 4)
    assert per_window("base") == f32.per_window
    assert per_window("base-half") == f32.per_window  # FP16 weights are held at f32 for an f32 hint
    assert per_window("base", "bf16") == f32.per_window // 2
    # int8 on the default IR: the dense layers shrink, the LSTM loop stays at the inference precision
    assert per_window("base-int8") == 16 * f32.lstm_per_step + f32.dense_per_window // 4
    # int8 on the hoisted IR: everything is a MatMul, everything is one byte
    assert per_window("base-fast-int8") == bench.weight_traffic(RELEASE, N_CLASSES, 1, lstm="hoisted").per_window


def test_bound_is_bytes_over_bandwidth_and_halves_with_bf16_weights():
    f32 = bench.bound_seconds(RELEASE, N_CLASSES, "f32", 20e9)
    assert f32 == pytest.approx(bench.weight_traffic(RELEASE, N_CLASSES, 4).per_window / 20e9)
    assert bench.bound_seconds(RELEASE, N_CLASSES, "bf16", 20e9) == pytest.approx(f32 / 2)


class Clock:
    """A fake clock: each reading is one second after the previous one."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Summing:
    """A streaming model whose state counts the windows it saw since the last zero state."""

    def step(self, window, state_c, state_h):
        return None, state_c + 1, state_h + window.sum()


def test_time_stream_skips_a_warm_up_pass_and_carries_the_state():
    seen = []

    class Recording(Summing):
        def step(self, window, state_c, state_h):
            seen.append(float(state_c[0, 0]))
            return super().step(window, state_c, state_h)

    windows = np.ones((3, 1, 2), np.float32)
    timings = time_stream(Recording(), windows, (1, 4), repeat=2, clock=Clock())
    assert timings.window_seconds == [1.0] * 6  # 2 timed passes x 3 windows, one clock tick each
    assert timings.pass_seconds == [3.0, 3.0]
    assert seen == [0.0, 1.0, 2.0] * 3  # every pass starts from zero, then carries


def test_summarize_a_streamed_engine():
    row = bench.summarize(stream_result("ir-fp32-f32", [100, 200, 100, 300]), RELEASE, N_CLASSES, 22e9)
    assert row.window.median == pytest.approx(0.15) and row.window.min == pytest.approx(0.1)
    assert row.rtf.median == pytest.approx(0.35 / 0.64)
    assert row.bound == pytest.approx(bench.weight_traffic(RELEASE, N_CLASSES, 4).per_window / 22e9)
    assert row.x_bound == (pytest.approx(0.15 / row.bound), pytest.approx(0.1 / row.bound))
    assert row.load == 1.5 and not row.derived


def test_summarize_takes_the_bound_from_the_bytes_the_variant_streams():
    result = stream_result("ir-hoisted-fp32-f32", [30, 40], weight_bytes_per_window=1.1e9)
    assert bench.summarize(result, RELEASE, N_CLASSES, 22e9).bound == pytest.approx(0.05)


def test_summarize_the_native_client_divides_the_utterance_by_its_windows():
    result = stream_result("native-0.9.3", [100, 100])
    del result["window_seconds"]
    result["pass_seconds"] = [0.4, 0.6]
    row = bench.summarize(result, RELEASE, N_CLASSES, 22e9)
    assert row.derived and row.window.min == pytest.approx(0.2) and row.window.median == pytest.approx(0.25)


def test_ratios_compare_the_f32_ir_with_tf_the_native_client_and_the_bound():
    rows = [bench.summarize(stream_result(key, ms), RELEASE, N_CLASSES, 22e9)
            for key, ms in (("ir-fp32-f32", [100, 100]), ("tf-2.17.1", [50, 50]), ("native-0.9.3", [400, 400]))]
    values = bench.ratios(rows)
    assert values["IR / tf-2.17.1"] == pytest.approx(2.0)
    assert values["IR / native-0.9.3 (RTF)"] == pytest.approx(0.25)
    assert values["IR / bound"] == pytest.approx(rows[0].x_bound[0])
    assert bench.ratios(rows[1:]) == {}


def test_ratios_give_each_variant_speed_up_over_the_default_ir_at_f32():
    rows = [bench.summarize(stream_result(key, ms), RELEASE, N_CLASSES, 22e9)
            for key, ms in (("ir-fp32-f32", [100, 100]), ("ir-hoisted-fp32-f32", [40, 40]),
                            ("ir-hoisted-fp32-default", [20, 20]))]
    values = bench.ratios(rows)
    assert values["speed-up of ir-hoisted-fp32-f32 over the default IR"] == pytest.approx(2.5)
    assert not any("default over" in name or "-default" in name for name in values)


def test_render_table_has_a_row_per_engine_and_marks_derived_times():
    native = stream_result("native-0.9.3", [400, 400])
    del native["window_seconds"]
    rows = [bench.summarize(result, RELEASE, N_CLASSES, 22e9) for result in (stream_result("ir-fp32-f32", [100, 120]), native)]
    table = bench.render_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| engine | precision used | threads | ms/window median |")
    assert lines[2].startswith("| ir-fp32-f32 | f32 | 2 | 110.0 | ")
    assert lines[3].startswith("| native-0.9.3 * |") and "includes features" in lines[-1]


def test_render_build_costs_rounds_seconds():
    text = bench.render_build_costs({"warm rebuild after clean, s": 41.234, "note": "from the log"})
    assert "| warm rebuild after clean, s | 41.2 |" in text and "| note | from the log |" in text


def test_variants_table_names_each_ir_its_size_traffic_and_frozen_graph():
    table = bench.render_variants({
        "fp32": {"target": "t", "ir_bin_mb": 189.2, "frozen_graph_sha256": "ab" * 32, "weight_traffic_f32_bytes": 2.2e9},
        "hoisted-int8": {"target": "t-fast-int8", "ir_bin_mb": 47.4, "frozen_graph_sha256": "cd" * 32,
                         "weight_traffic_f32_bytes": 0.3e9},
    }, 20e9)
    lines = table.splitlines()
    assert lines[2] == "| fp32 | t | 189 | 2.20 | 110.0 | abababababab |"
    assert lines[3] == "| hoisted-int8 | t-fast-int8 | 47 | 0.30 | 15.0 | cdcdcdcdcdcd |"


def test_machine_description_from_proc():
    assert bench.memory_gib("MemTotal:       24576000 kB\nMemFree: 1 kB\n") == pytest.approx(23.4375)


def test_table_order_puts_the_ir_as_ds2ir_runs_it_first():
    keys = ["native-0.9.3", "tf-2.17.1", "ir-hoisted-fp32-default", "ir-fp16-f32", "tf-1.15.5", "ir-fp32-f32-pinned",
            "ir-hoisted-fp32-f32", "ir-fp32-default", "ir-fp32-f32"]
    assert sorted(keys, key=bench.table_order) == [
        "ir-fp32-f32", "ir-fp32-default", "ir-fp32-f32-pinned", "ir-fp16-f32", "ir-hoisted-fp32-f32",
        "ir-hoisted-fp32-default", "tf-1.15.5", "tf-2.17.1", "native-0.9.3"]


def test_render_rates_by_thread_count():
    assert bench.render_rates({"2": 37.25, "1": 28.21}) == "28.2 GB/s on 1 thread, 37.2 GB/s on 2 threads"


def test_merge_runs_appends_passes_and_keeps_the_worst_rss_and_the_whole_load_span():
    earlier = stream_result("ir-fp32-f32", [100, 110])
    later = dict(stream_result("ir-fp32-f32", [120, 130]), peak_rss_mb=400.0, load=[2.0, 3.0])
    merged = bench.merge_runs(earlier, later)
    assert merged["window_seconds"] == pytest.approx([0.1, 0.11, 0.12, 0.13])
    assert merged["pass_seconds"] == pytest.approx([0.21, 0.25])
    assert merged["peak_rss_mb"] == 500.0 and merged["load"] == [1.0, 3.0] and merged["containers"] == 2
    assert bench.merge_runs(merged, later)["containers"] == 3


def test_ir_keys_name_the_setting_unless_it_is_ds2ir_own():
    assert bench.ir_key("fp32", "f32") == bench.IR_KEY
    assert bench.ir_key("hoisted-int8", "default") == "ir-hoisted-int8-default"
    assert bench.ir_key("fp32", "f32", "openvino-defaults") == "ir-fp32-f32-openvino-defaults"
