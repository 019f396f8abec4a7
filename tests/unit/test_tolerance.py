"""The IR-vs-TF gate's bounds, at their edges (mutation testing found them unpinned)."""
from __future__ import annotations

import pytest

from ds2ir import verify


@pytest.mark.parametrize("ir_precision, inference, bound", [
    ("FP32", "f32", 1e-5), ("FP16", "f32", 2e-2), ("FP32", "bf16", 1e-1), ("FP16", "bf16", 1e-1),
])
def test_each_precision_has_its_own_bound(ir_precision, inference, bound):
    assert verify.tolerance_for(ir_precision, inference) == bound
    assert verify.tolerance_for(ir_precision, inference, "none") == bound


@pytest.mark.parametrize("inference", ["f32", "bf16"])
def test_int8_weights_are_reported_not_gated(inference):
    assert verify.tolerance_for("FP32", inference, "int8") is None


def test_an_error_exactly_at_the_bound_passes_and_one_above_fails():
    assert verify.within(1e-5, 1e-5) is True
    assert verify.within(1.0000001e-5, 1e-5) is False
    assert verify.within(0.0, 1e-5) is True
    assert verify.within(1e9, None) is True  # no bound: reported only
