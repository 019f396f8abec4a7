"""What the verify report says about each recording, field by field (mutation testing found them unpinned)."""
from __future__ import annotations

import numpy as np
import pytest

from ds2ir.model import verify
from ds2ir.model.architecture import Architecture


def outputs(logits, state_c, state_h):
    return {"logits": np.array(logits, np.float64), "state_c": np.array(state_c, np.float64),
            "state_h": np.array(state_h, np.float64)}


TRUTH = outputs([[0.5, -0.5], [0.25, 0.0]], [[4.0, -2.0], [8.0, 0.5]], [[0.1, 0.2], [0.3, 0.4]])


def moved(base, name, window, delta):
    copy = {key: value.copy() for key, value in base.items()}
    copy[name][window, 0] += delta
    return copy


def test_fidelity_reports_both_errors_the_worst_window_and_each_windows_bound():
    tf = moved(TRUTH, "state_c", 1, 8e-5)  # TF's own float32 error: 1e-5 of |c| = 8
    ir = moved(TRUTH, "state_c", 1, -4e-4)
    result = verify.fidelity(TRUTH, tf, ir, 0.0)
    entry = result["outputs"]["state_c"]
    assert entry["ir_vs_f64"] == pytest.approx(5e-5) and entry["tf_vs_f64"] == pytest.approx(1e-5)
    assert entry["per_window_ir_vs_f64"] == pytest.approx([0.0, 5e-5])
    assert entry["per_window_tf_vs_f64"] == pytest.approx([0.0, 1e-5])
    assert entry["per_window_bound"] == pytest.approx([8 * verify.ERROR_FLOOR, 8e-5])
    assert entry["worst_window"] == 1 and entry["worst_ratio"] == pytest.approx(5 / 8)
    assert result["ir_vs_f64"] == pytest.approx(5e-5) and result["tf_vs_f64"] == pytest.approx(1e-5)
    assert result["worst_ratio"] == pytest.approx(5 / 8) and result["passed"] is True
    assert (result["factor"], result["floor"], result["allowance"]) == (verify.FIDELITY_FACTOR, verify.ERROR_FLOOR, 0.0)
    assert result["rule"] == ("per output and window: |IR - f64| <= max(8 * max(|TF - f64|, 9.54e-07), 0.0); "
                              "errors scaled by max(1, |f64|)")
    assert verify.fidelity_failures(result) == []


def test_a_failure_names_each_output_over_its_bound_with_its_window_and_errors():
    ir = moved(moved(TRUTH, "logits", 0, 1e-3), "state_h", 1, 2e-3)
    result = verify.fidelity(TRUTH, TRUTH, ir, 0.0)
    assert result["passed"] is False and result["worst_ratio"] == pytest.approx(2e-3 / (8 * verify.ERROR_FLOOR))
    assert verify.fidelity_failures(result) == [
        "logits (window 0): |IR - f64| 0.001 > bound 7.63e-06 (|TF - f64| 0)",
        "state_h (window 1): |IR - f64| 0.002 > bound 7.63e-06 (|TF - f64| 0)",
    ]


def test_an_error_at_exactly_the_bound_passes_and_is_no_failure_line():
    zeros = outputs(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))
    result = verify.fidelity(zeros, zeros, moved(zeros, "state_h", 0, 8 * verify.ERROR_FLOOR), 0.0)
    assert result["outputs"]["state_h"]["worst_ratio"] == 1.0
    assert result["passed"] is True and verify.fidelity_failures(result) == []


def test_scaled_errors_divide_by_the_reference_beyond_one_and_mark_a_shape_mismatch_infinite():
    reference = np.array([[0.5, 4.0], [-10.0, 0.0]])
    candidate = np.array([[0.75, 4.0], [-12.0, 0.5]])
    assert list(verify.scaled_errors(reference, candidate)) == [0.25, 0.5]
    assert list(verify.scaled_errors(reference, candidate[:, :1])) == [np.inf, np.inf]


def test_compare_reports_mean_reference_size_and_per_window_scaled_errors():
    report = verify.compare(TRUTH, moved(TRUTH, "state_c", 1, 0.8))
    entry = report["state_c"]
    assert entry["max_abs"] == pytest.approx(0.8) and entry["mean_abs"] == pytest.approx(0.2)
    assert entry["max_scaled"] == pytest.approx(0.1) and entry["max_reference"] == 8.0
    assert entry["per_window_max_abs"] == pytest.approx([0.0, 0.8])
    assert entry["per_window_max_scaled"] == pytest.approx([0.0, 0.1])
    mismatch = verify.compare(TRUTH, dict(TRUTH, logits=np.zeros((2, 3))))["logits"]
    assert mismatch == {"shape_mismatch": [[2, 2], [2, 3]], "max_abs": float("inf"), "max_scaled": float("inf")}


def test_worst_is_the_largest_scaled_error_of_any_output():
    assert verify.worst({"a": {"max_scaled": 0.5}, "b": {"max_scaled": 2.0}, "c": {"max_scaled": 1.0}}) == 2.0


def test_utterance_logits_are_the_windows_steps_in_order_up_to_the_last_valid_one():
    per_window = np.arange(2 * 4, dtype=np.float32).reshape(2, 4, 1, 1)
    assert verify.utterance_logits(per_window, valid_steps=3)[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert verify.utterance_logits(per_window, valid_steps=4).shape == (8, 1, 1)


@pytest.mark.parametrize("series, drift", [
    ([1e-6, 1e-6, 1e-3], False),  # under four windows: too short to call a trend
    ([1e-6, 1e-6, 1e-6, 1e-3], True),  # four: the last quarter (one window) against the first
    ([1e-4, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 4.1e-4], True),  # quarters of two: means 5.05e-5 and 2.055e-4
    ([1e-4, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 4.0e-4], False),  # late mean 2.005e-4 < 4 x 5.05e-5
    ([1e-7, 1e-7, 1e-7, 2e-5], True),  # just over the floor
    ([1e-7, 1e-7, 1e-7, 1e-5], False),  # at the floor: rounding
])
def test_drift_is_a_late_quarter_over_the_floor_and_over_four_times_the_early_quarter(series, drift):
    assert verify.grows(series) is drift


def test_drift_floor_is_adjustable():
    assert verify.grows([1e-7, 1e-7, 1e-7, 1e-5], floor=1e-6) is True


def report(transcripts, *, tolerance=0.0, same_transcript=True, ir=None):
    return verify.file_report(TRUTH, ir or TRUTH, ground_truth=TRUTH, valid_steps=2, transcripts=transcripts,
                              tolerance=tolerance, same_transcript=same_transcript)


def test_file_report_counts_windows_and_passes_an_exact_ir_with_the_same_transcript():
    result = report({"tf": "she had", "ir": "she had"})
    assert (result["windows"], result["valid_steps_in_last_window"]) == (2, 2)
    assert result["passed"] is True and result["transcripts_equal"] is True and result["state_drift"] is False
    assert result["max_abs"] == result["max_scaled"] == result["ir_vs_f64"] == result["tf_vs_f64"] == 0.0
    assert result["fidelity"]["passed"] is True and set(result["outputs"]) == set(verify.STREAM_OUTPUTS)


def test_file_report_takes_the_largest_error_of_any_output():
    result = report({"tf": "a", "ir": "a"}, ir=moved(TRUTH, "state_c", 1, 0.8), tolerance=None)
    assert result["max_abs"] == pytest.approx(0.8) and result["max_scaled"] == pytest.approx(0.1)
    assert result["ir_vs_f64"] == pytest.approx(0.1) and result["passed"] is True  # int8: reported, not gated


def test_a_lossy_variant_only_reports_a_different_transcript_but_still_fails_the_gate():
    assert report({"tf": "she had", "ir": "she ad"}, same_transcript=False)["passed"] is True
    assert report({"tf": "she had", "ir": "she ad"}, same_transcript=False)["transcripts_equal"] is False
    wrong = moved(TRUTH, "logits", 0, 1.0)
    assert report({"tf": "a", "ir": "a"}, ir=wrong, same_transcript=False)["passed"] is False


def test_file_report_flags_state_drift_in_either_state():
    windows = 8
    truth = outputs(np.zeros((windows, 2)), np.zeros((windows, 2)), np.zeros((windows, 2)))
    growing = np.array([[1e-7, 0]] * 4 + [[1e-3, 0]] * 4)
    for name in ("state_c", "state_h"):
        ir = dict(truth, **{name: growing})
        result = verify.file_report(truth, ir, ground_truth=truth, valid_steps=1, transcripts={"tf": "", "ir": ""},
                                    tolerance=None)
        assert result["state_drift"] is True, name
    result = verify.file_report(truth, dict(truth, logits=growing), ground_truth=truth, valid_steps=1,
                                transcripts={"tf": "", "ir": ""}, tolerance=None)
    assert result["state_drift"] is False  # growing logits are an error, not drift of the carried state


def test_random_inputs_span_the_range_of_features_and_states():
    arch = Architecture(n_hidden=16)
    inputs = verify.random_inputs(arch, seed=3, n_windows=40)
    assert inputs["windows"].shape == (40,) + arch.input_shape and inputs["windows"].dtype == np.float32
    assert 5 < inputs["windows"].std() < 20  # MFCCs: standard normal times 10
    assert inputs["state_c"].shape == inputs["state_h"].shape == arch.state_shape
    assert inputs["state_c"].dtype == inputs["state_h"].dtype == np.float32
    assert np.abs(inputs["state_h"]).max() <= 0.5 and np.abs(inputs["state_c"]).max() > 0.5
    assert verify.random_inputs(arch, seed=4)["windows"].shape[0] == 3
    assert not np.array_equal(verify.random_inputs(arch, seed=4)["windows"], verify.random_inputs(arch, seed=5)["windows"])


def test_variant_comparison_skips_files_a_variant_did_not_verify_and_keeps_its_fields():
    def entry(transcript, scaled):
        return {"max_abs": scaled * 2, "max_scaled": scaled, "ir_vs_f64": scaled / 2, "tf_vs_f64": 1e-7,
                "state_drift": False, "passed": True, "source": "x.wav", "transcripts": {"tf": "tf says", "ir": transcript}}
    reports = {
        "fp32": {"target": "t", "inference_precision": "bf16", "tolerance": 0.1, "passed": True,
                 "files": {"00-x": entry("a", 1e-3), "01-y": entry("b", 2e-3)}},
        "fp16": {"target": "t-fp16", "inference_precision": "bf16", "tolerance": 0.1, "passed": True,
                 "files": {"00-x": entry("c", 3e-3)}},
    }
    comparison = verify.variant_comparison(reports)
    assert comparison["inference_precision"] == "bf16" and comparison["passed"] is True
    assert list(comparison["files"]["01-y"]["variants"]) == ["fp32"]
    assert comparison["files"]["00-x"]["source"] == "x.wav" and comparison["files"]["00-x"]["tf"] == "tf says"
    assert comparison["files"]["00-x"]["variants"]["fp16"] == {
        "target": "t-fp16", "tolerance": 0.1, "max_abs": 6e-3, "max_scaled": 3e-3, "ir_vs_f64": 1.5e-3, "tf_vs_f64": 1e-7,
        "state_drift": False, "transcript": "c", "passed": True}
    text = verify.render_variant_comparison(comparison)
    assert text.startswith("IR variants against TensorFlow, bf16 inference.") and "\n### 01-y\n" in text
    assert "| fp16 | t-fp16 | 0.0015 | 1e-07 | 0.003 | 0.1 | no | c (differs from TF) | yes |" in text.splitlines()


def test_a_shape_mismatch_in_one_output_leaves_the_others_compared():
    report = verify.compare(TRUTH, dict(moved(TRUTH, "state_h", 0, 0.25), logits=np.zeros((2, 3))))
    assert list(report) == list(verify.STREAM_OUTPUTS) and report["state_h"]["max_abs"] == pytest.approx(0.25)


def test_an_output_between_one_and_two_bounds_is_a_failure_line_too():
    result = verify.fidelity(TRUTH, TRUTH, moved(TRUTH, "state_h", 0, 1.5 * 8 * verify.ERROR_FLOOR), 0.0)
    assert [line.split(" ")[0] for line in verify.fidelity_failures(result)] == ["state_h"]


class Carry:
    """A model whose every output depends on both states it is given."""

    def step(self, window, state_c, state_h):
        return np.full((1, 1), state_c[0] + 10 * state_h[0]), state_c + window[0], state_h + 2 * window[0]


def test_stream_passes_both_carried_states_to_every_step():
    out = verify.stream(Carry(), np.array([[1.0], [2.0]]), np.zeros(1), np.zeros(1))
    assert out["logits"][:, 0, 0].tolist() == [0.0, 21.0]  # (0 + 10*0), then (1 + 10*2)
    assert out["state_c"][:, 0].tolist() == [1.0, 3.0] and out["state_h"][:, 0].tolist() == [2.0, 6.0]


def test_random_windows_have_the_spread_of_mfccs_and_states_that_of_an_lstm():
    arch = Architecture(n_hidden=64)
    inputs = verify.random_inputs(arch, seed=11, n_windows=20)
    assert abs(float(inputs["windows"].std()) - 10.0) < 0.2  # 10 x standard normal, 20 x 16 x 494 values
    state_h = inputs["state_h"]
    assert -0.5 <= state_h.min() < -0.45 and 0.45 < state_h.max() <= 0.5  # uniform over [-0.5, 0.5)


@pytest.mark.parametrize("series, drift", [
    ([1e-6, 1e-3, 1e-6, 1e-4], True),  # four windows: quarters of one (of two: no growth)
    ([1e-6, 1e-3, 1e-6, 1e-6, 1e-6, 1e-6, 1e-6, 1e-4], False),  # eight: quarters of two (of one: growth)
    ([2 ** -16, 0.0, 0.0, 2 ** -14], False),  # late exactly four times early: not more
])
def test_drift_quarters_are_a_quarter_of_the_windows_at_least_one(series, drift):
    assert verify.grows(series) is drift


def test_file_report_counts_the_windows_and_keeps_the_transcripts():
    truth = outputs(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)))
    transcripts = {"tf": "she had", "ir": "she had"}
    result = verify.file_report(truth, truth, ground_truth=truth, valid_steps=1, transcripts=transcripts, tolerance=0.0)
    assert result["windows"] == 3 and result["transcripts"] == transcripts


def test_variant_comparison_lists_a_file_for_every_variant_that_verified_it():
    def report(files):
        entry = {"max_abs": 0.0, "max_scaled": 0.0, "ir_vs_f64": 0.0, "tf_vs_f64": 0.0, "state_drift": False,
                 "passed": True, "transcripts": {"tf": "a", "ir": "a"}}
        return {"target": "t", "inference_precision": "f32", "tolerance": 0.0, "passed": True,
                "files": {name: entry for name in files}}
    comparison = verify.variant_comparison({"fp32": report(["x"]), "fp16": report([]), "int8": report(["x"])})
    assert list(comparison["files"]["x"]["variants"]) == ["fp32", "int8"]
