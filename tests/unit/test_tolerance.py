"""The fidelity gate's bounds, at their edges (mutation testing found them unpinned)."""
from __future__ import annotations

import numpy as np
import pytest

from ds2ir.model import verify


@pytest.mark.parametrize("ir_precision, inference, allowance", [
    ("FP32", "f32", 0.0), ("FP16", "f32", 2e-2), ("FP32", "bf16", 1e-1), ("FP16", "bf16", 1e-1),
])
def test_each_precision_has_its_own_allowance(ir_precision, inference, allowance):
    assert verify.tolerance_for(ir_precision, inference) == allowance
    assert verify.tolerance_for(ir_precision, inference, "none") == allowance


@pytest.mark.parametrize("inference", ["f32", "bf16"])
def test_int8_weights_are_reported_not_gated(inference):
    assert verify.tolerance_for("FP32", inference, "int8") is None


def _outputs(value):
    return {name: np.full((2, 3), value) for name in verify.STREAM_OUTPUTS}


def test_an_error_exactly_at_the_bound_passes_and_one_above_fails():
    truth, tf = _outputs(0.5), _outputs(0.5 + 1e-5)  # TF 1e-5 from float64: the bound is 8e-5
    bound = verify.FIDELITY_FACTOR * 1e-5
    assert verify.fidelity(truth, tf, _outputs(0.5 + bound * 0.999), 0.0)["passed"] is True
    assert verify.fidelity(truth, tf, _outputs(0.5 + bound * 1.001), 0.0)["passed"] is False
    assert verify.fidelity(truth, truth, truth, 0.0)["passed"] is True
    assert verify.fidelity(truth, tf, _outputs(1e9), None)["passed"] is True  # no bound: reported only


def test_the_floor_and_the_allowance_each_raise_the_bound():
    truth = _outputs(0.5)
    floor = verify.FIDELITY_FACTOR * verify.ERROR_FLOOR
    assert verify.fidelity(truth, truth, _outputs(0.5 + floor * 0.99), 0.0)["passed"] is True
    assert verify.fidelity(truth, truth, _outputs(0.5 + floor * 1.01), 0.0)["passed"] is False
    assert verify.fidelity(truth, truth, _outputs(0.5 + 0.0199), 2e-2)["passed"] is True
    assert verify.fidelity(truth, truth, _outputs(0.5 + 0.0201), 2e-2)["passed"] is False
