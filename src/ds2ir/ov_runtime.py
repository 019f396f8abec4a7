"""Run an OpenVINO IR of DeepSpeech, one window at a time, state carried by the caller.

This is how an application uses the IR: features and CTC decoding outside, the LSTM
state fed back from the previous window.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ds2ir import config
from ds2ir.errors import MissingInputError, VerificationError

#: IR output name -> what it is, for the seed's three outputs
IR_OUTPUTS = {config.LOGITS: "logits", config.LSTM_FINAL_C: "state_c", config.LSTM_FINAL_H: "state_h"}


def _output_key(names: set) -> str:
    for name in names:
        base = name[:-2] if name.endswith(":0") else name
        if base in IR_OUTPUTS:
            return IR_OUTPUTS[base]
    raise VerificationError(f"The IR has an unexpected output {sorted(names)}; expected {sorted(IR_OUTPUTS)}.")


def read_model(ir_xml: Path):  # type: ignore[no-untyped-def]
    """The IR as an openvino.Model, with a clear error when it is missing."""
    import openvino as ov

    if not ir_xml.is_file() or not ir_xml.with_suffix(".bin").is_file():
        raise MissingInputError(f"The IR {ir_xml} (and its .bin) does not exist; run the convert stage ('invoke convert').")
    return ov.Core().read_model(str(ir_xml))


def describe(ir_xml: Path) -> Dict[str, Dict[str, List[int]]]:
    """Input and output names with static shapes, for inspection and tests."""
    model = read_model(ir_xml)
    return {
        "inputs": {port.get_any_name(): list(port.get_partial_shape().to_shape()) for port in model.inputs},
        "outputs": {_output_key(port.get_names()): list(port.get_partial_shape().to_shape()) for port in model.outputs},
    }


class OVStreamingModel:
    """The IR compiled for a device; ``step`` has the same contract as the TF model."""

    def __init__(self, ir_xml: Path, *, device: str = "CPU", precision: str = "f32", threads: int = 0):
        import openvino as ov

        core = ov.Core()
        properties = {"INFERENCE_PRECISION_HINT": precision}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = str(threads)
        compiled = core.compile_model(read_model(ir_xml), device, properties)
        self._request = compiled.create_infer_request()
        self._outputs = {_output_key(port.get_names()): port for port in compiled.outputs}

    def step(self, window: np.ndarray, state_c: np.ndarray, state_h: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        results = self._request.infer({
            config.INPUT_NODE: window,
            config.PREVIOUS_STATE_C: state_c,
            config.PREVIOUS_STATE_H: state_h,
        })
        return tuple(np.array(results[self._outputs[key]]) for key in ("logits", "state_c", "state_h"))  # type: ignore[return-value]

    def close(self) -> None:
        self._request = None
