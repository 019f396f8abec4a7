"""Faults injected on request, so that tests can watch every gate fail on a model that is really wrong.

``DS2IR_INJECT_FAULT=<kind>`` (forwarded into the stage containers, see docker.FORWARDED_ENVIRONMENT)
changes what the gates see, the way a broken converter, runtime or feature pipeline would:

- ``weight``: the IR's first layer computes with one weight 1% off (its largest in magnitude);
- ``bias``: the IR's first layer computes without its bias;
- ``state``: the IR's new c and h come back swapped, so the application carries the state wrongly;
- ``features``: the numpy MFCCs that verify compares with TensorFlow's audio ops are 1% off.

Unset, nothing changes. The first three act on the compiled model (the convert/app images'
OpenVINO), the last on verify's feature check (the freeze image).
"""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from ds2ir.errors import ConfigError

ENV = "DS2IR_INJECT_FAULT"
KINDS = ("weight", "bias", "state", "features")
#: relative size of the weight and feature faults: far beyond float32 rounding, far below a crash
SCALE = 0.01


def requested() -> Optional[str]:
    """The fault the environment asks for, or None."""
    kind = os.environ.get(ENV, "")
    if not kind:
        return None
    if kind not in KINDS:
        raise ConfigError(f"{ENV}={kind!r} is not a fault ds2ir can inject; use one of {', '.join(KINDS)} or unset it.")
    return kind


def corrupt_model(model: Any) -> None:  # an openvino.Model (OpenVINO is untyped)
    """Apply a requested ``weight`` or ``bias`` fault to an openvino.Model before it is compiled."""
    kind = requested()
    if kind not in ("weight", "bias"):
        return
    op_type = "MatMul" if kind == "weight" else "Add"
    layer = next(op for op in model.get_ordered_ops() if op.get_type_name() == op_type
                 and op.input_value(1).get_node().get_type_name() == "Constant")
    constant = layer.input_value(1).get_node()
    values = np.array(constant.get_data(), dtype=np.float32)
    if kind == "weight":
        index = np.unravel_index(np.argmax(np.abs(values)), values.shape)
        values[index] *= 1 + SCALE
    else:
        values[...] = 0
    from openvino.runtime import op as ov_op

    layer.input(1).replace_source_output(ov_op.Constant(values).output(0))
    model.validate_nodes_and_infer_types()


def swaps_state() -> bool:
    """Whether the IR's new c and h are to come back swapped."""
    return requested() == "state"


def corrupt_features(mfcc: np.ndarray) -> np.ndarray:
    """numpy MFCCs as the features gate sees them: 1% off under the ``features`` fault, else unchanged."""
    return mfcc * (1 + SCALE) if requested() == "features" else mfcc
