import numpy as np

from ds2ir.model import verify
from ds2ir.model.architecture import Architecture

ARCH = Architecture(n_hidden=8)


class Accumulator:
    """A stand-in streaming model: the state is the running sum of the windows' means."""

    def step(self, window, state_c, state_h):
        total = state_c + window.mean()
        return np.full((ARCH.n_steps, 1, 3), window.mean(), np.float32), total, total * 2


def test_stream_carries_the_state_from_window_to_window():
    windows = np.stack([np.full(ARCH.input_shape, value, np.float32) for value in (1.0, 2.0, 3.0)])
    zeros = np.zeros(ARCH.state_shape, np.float32)
    out = verify.stream(Accumulator(), windows, zeros, zeros)
    assert out["logits"].shape == (3, ARCH.n_steps, 1, 3)
    np.testing.assert_allclose(out["state_c"][:, 0, 0], [1, 3, 6])
    np.testing.assert_allclose(out["state_h"][:, 0, 0], [2, 6, 12])


def test_compare_reports_max_and_per_window():
    reference = {name: np.zeros((2, 4), np.float32) for name in verify.STREAM_OUTPUTS}
    candidate = {name: value.copy() for name, value in reference.items()}
    candidate["state_h"][1, 3] = 0.5
    report = verify.compare(reference, candidate)
    assert report["state_h"]["max_abs"] == 0.5 and report["state_h"]["per_window_max_abs"] == [0.0, 0.5]
    assert verify.worst(report) == 0.5 and report["logits"]["max_abs"] == 0.0


def test_errors_on_values_beyond_one_are_scaled_by_their_size():
    reference = {name: np.full((1, 2), 20.0) for name in verify.STREAM_OUTPUTS}
    candidate = {name: value + 4e-5 for name, value in reference.items()}
    report = verify.compare(reference, candidate)
    assert abs(report["state_c"]["max_abs"] - 4e-5) < 1e-12
    assert abs(report["state_c"]["max_scaled"] - 2e-6) < 1e-12


def test_compare_flags_shape_mismatch():
    reference = {name: np.zeros((2, 4)) for name in verify.STREAM_OUTPUTS}
    candidate = dict(reference, logits=np.zeros((2, 5)))
    assert verify.worst(verify.compare(reference, candidate)) == float("inf")


def test_utterance_logits_keeps_only_real_steps():
    per_window = np.arange(3 * 16, dtype=np.float32).reshape(3, 16, 1, 1)
    assert verify.utterance_logits(per_window, valid_steps=5).shape == (37, 1, 1)


def test_growth_across_windows_is_drift_but_noise_is_not():
    assert verify.grows([1e-7, 1e-7, 2e-7, 1e-6, 5e-6, 1e-5, 3e-5, 8e-5])
    assert not verify.grows([3e-6, 1e-6, 4e-6, 2e-6, 3e-6, 1e-6, 4e-6, 2e-6])
    # Rounding that grows with the state it rounds stays below the floor: not drift.
    assert not verify.grows([1e-7, 2e-7, 5e-7, 1e-6, 2e-6, 3e-6, 4e-6, 5e-6])


def test_file_report_fails_on_different_transcripts_even_when_close():
    outputs = {name: np.zeros((2, 4)) for name in verify.STREAM_OUTPUTS}
    report = verify.file_report(outputs, outputs, ground_truth=outputs, valid_steps=3, transcripts={"tf": "a", "ir": "b"},
                                tolerance=0.0)
    assert report["max_abs"] == 0.0 and report["fidelity"]["passed"] is True
    assert report["transcripts_equal"] is False and report["passed"] is False


def test_allowances():
    assert verify.tolerance_for("FP32", "f32") == 0.0
    assert verify.tolerance_for("FP16", "f32") == 2e-2
    assert verify.tolerance_for("FP32", "bf16") == verify.tolerance_for("FP16", "bf16") == 1e-1
    assert verify.tolerance_for("FP32", "f32", "int8") is None


def _truth(n_windows=3):
    rng = np.random.RandomState(0)
    return {"logits": rng.uniform(0, 1, (n_windows, 16, 1, 29)), "state_c": rng.normal(0, 20, (n_windows, 1, 8)),
            "state_h": rng.uniform(-1, 1, (n_windows, 1, 8))}


def _float32(outputs, ulps=0):
    """Outputs rounded to float32, then moved ``ulps`` float32 steps away from zero."""
    rounded = {name: value.astype(np.float32) for name, value in outputs.items()}
    for _ in range(ulps):
        rounded = {name: np.nextafter(value, np.sign(value) * np.inf) for name, value in rounded.items()}
    return rounded


def test_fidelity_passes_an_ir_that_rounds_like_tf_and_fails_one_beyond():
    truth = _truth()
    tf = _float32(truth)
    assert verify.fidelity(truth, tf, _float32(truth, ulps=2), 0.0)["passed"] is True
    wrong = _float32(truth)
    wrong["state_h"][1, 0, 3] += 1e-4
    result = verify.fidelity(truth, tf, wrong, 0.0)
    assert result["passed"] is False and result["outputs"]["state_h"]["worst_window"] == 1
    assert result["outputs"]["logits"]["worst_ratio"] <= 1.0
    [line] = verify.fidelity_failures(result)
    assert line.startswith("state_h (window 1): |IR - f64| 0.0001 > bound 7.63e-06")


def test_fidelity_bound_is_tfs_error_times_the_factor_above_the_floor():
    truth = _truth()
    tf = {name: value + 1e-4 for name, value in truth.items()}  # a window TF finds hard: the IR may be as far
    assert verify.fidelity(truth, tf, {name: value - 7e-4 for name, value in truth.items()}, 0.0)["passed"] is True
    assert verify.fidelity(truth, tf, {name: value - 9e-4 for name, value in truth.items()}, 0.0)["passed"] is False
    exact = {name: value.copy() for name, value in truth.items()}  # TF exact by chance: the floor holds
    assert verify.fidelity(truth, exact, {name: value + 7e-6 for name, value in truth.items()}, 0.0)["passed"] is True
    assert verify.fidelity(truth, exact, {name: value + 1e-5 for name, value in truth.items()}, 0.0)["passed"] is False


def test_fidelity_allowance_admits_lossy_irs_and_none_only_reports():
    truth = _truth()
    lossy = {name: value + 1e-2 for name, value in truth.items()}
    assert verify.fidelity(truth, truth, lossy, verify.tolerance_for("FP32", "f32"))["passed"] is False
    assert verify.fidelity(truth, truth, lossy, verify.tolerance_for("FP16", "f32"))["passed"] is True
    result = verify.fidelity(truth, truth, {name: value + 1.0 for name, value in truth.items()}, None)
    assert result["passed"] is True and result["ir_vs_f64"] > 0.04


def test_fidelity_fails_a_shape_mismatch():
    truth = _truth()
    assert verify.fidelity(truth, truth, dict(truth, logits=truth["logits"][:, :8]), 0.0)["passed"] is False


def test_random_inputs_are_seeded():
    a, b = verify.random_inputs(ARCH, 7), verify.random_inputs(ARCH, 7)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["windows"].shape == (3,) + ARCH.input_shape


def _report(target, tolerance, transcript, max_scaled, drift=False, passed=True):
    entry = {"max_abs": max_scaled, "max_scaled": max_scaled, "ir_vs_f64": max_scaled / 2, "tf_vs_f64": 1e-6, "state_drift": drift, "passed": passed, "source": "a.wav",
             "transcripts": {"tf": "she had", "ir": transcript}}
    return {"target": target, "inference_precision": "f32", "tolerance": tolerance, "passed": passed,
            "files": {"00-a": entry}}


def test_variant_comparison_puts_each_variant_next_to_tf():
    comparison = verify.variant_comparison({
        "fp32": _report("t", 0.0, "she had", 3e-6),
        "int8": _report("t-int8", None, "she ad", 0.4, drift=True),
    })
    assert comparison["passed"] is True and comparison["files"]["00-a"]["tf"] == "she had"
    assert comparison["files"]["00-a"]["variants"]["int8"]["state_drift"] is True
    lines = verify.render_variant_comparison(comparison).splitlines()
    assert "| TF frozen graph | | | | | | | she had | |" in lines
    assert "| fp32 | t | 1.5e-06 | 1e-06 | 3e-06 | 0 | no | she had | yes |" in lines
    assert "| int8 | t-int8 | 0.2 | 1e-06 | 0.4 | reported | grows | she ad (differs from TF) | n/a |" in lines


def test_variant_comparison_fails_when_any_variant_fails():
    comparison = verify.variant_comparison({"fp32": _report("t", 0.0, "she had", 3e-6),
                                            "hoisted-fp32": _report("t-fast", 0.0, "she had", 2e-4, passed=False)})
    assert comparison["passed"] is False
    assert "| hoisted-fp32 | t-fast | 0.0001 | 1e-06 | 0.0002 | 0 | no | she had | NO |" in verify.render_variant_comparison(comparison)
