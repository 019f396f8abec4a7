"""Run an OpenVINO IR of DeepSpeech, one window at a time, state carried by the caller.

This is how an application uses the IR: features and CTC decoding outside, the LSTM
state fed back from the previous window.
"""
from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np

from ds2ir.errors import MissingInputError, VerificationError
from ds2ir.model import fault_injection
from ds2ir.model.architecture import INPUT_NODE, LOGITS, LSTM_FINAL_C, LSTM_FINAL_H, PREVIOUS_STATE_C, PREVIOUS_STATE_H

#: IR output name -> what it is, for the seed's three outputs
IR_OUTPUTS = {LOGITS: "logits", LSTM_FINAL_C: "state_c", LSTM_FINAL_H: "state_h"}


def _output_key(names: Set[str]) -> str:
    for name in names:
        base = name[:-2] if name.endswith(":0") else name
        if base in IR_OUTPUTS:
            return IR_OUTPUTS[base]
    raise VerificationError(f"The IR has an unexpected output {sorted(names)}; expected {sorted(IR_OUTPUTS)}.")


def openvino_api() -> ModuleType:
    """Where Core and get_version live: ``openvino`` from 2023.0, only ``openvino.runtime`` in 2022.3 LTS."""
    import openvino

    if hasattr(openvino, "Core"):
        return openvino
    import openvino.runtime

    return openvino.runtime


def openvino_version() -> str:
    """The runtime's build string, e.g. '2024.6.0-17404-4c0f47d2335-releases/2024/6'."""
    return str(openvino_api().get_version())


def read_model(ir_xml: Path, core: Any = None) -> Any:  # an openvino.Core, an openvino.Model (untyped)
    """The IR as an openvino.Model (read by ``core``, a new Core by default), with a clear error when it is missing."""
    if not ir_xml.is_file() or not ir_xml.with_suffix(".bin").is_file():
        raise MissingInputError(f"The IR {ir_xml} (and its .bin) does not exist; run the convert stage ('invoke convert').")
    return (core or openvino_api().Core()).read_model(str(ir_xml))


def describe(ir_xml: Path) -> Dict[str, Dict[str, List[int]]]:
    """Input and output names with static shapes, for inspection and tests."""
    model = read_model(ir_xml)
    return {
        "inputs": {port.get_any_name(): list(port.get_partial_shape().to_shape()) for port in model.inputs},
        "outputs": {_output_key(port.get_names()): list(port.get_partial_shape().to_shape()) for port in model.outputs},
    }


def compile_on_cpu(ir_xml: Path) -> str:
    """Compile the IR for CPU, as an application loads it; return the runtime's version."""
    openvino_api().Core().compile_model(read_model(ir_xml), "CPU")
    return openvino_version()


class OVStreamingModel:
    """The IR compiled for a device; ``step`` has the same contract as the TF model."""

    #: the properties :meth:`settings` reports (where the runtime has them)
    REPORTED = ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT",
                "ENABLE_CPU_PINNING")

    def __init__(self, ir_xml: Path, *, device: str = "CPU", precision: Optional[str] = "f32", threads: int = 0,
                 pin_threads: bool = False, mmap_weights: bool = False):
        """``precision`` None leaves the device's default (bf16 on CPUs that have it).

        A window streams every LSTM weight 16 times, so where the weights live and which
        cores stream them count (docs/benchmarks.md). They are copied into process memory,
        not read from the page cache the IR's .bin is memory-mapped from; on CPU, one stream
        serves one request at a time (LATENCY) on threads not pinned to cores, so that a
        thread whose core another process holds moves instead of stalling the window.
        ``mmap_weights`` and ``pin_threads`` restore OpenVINO's defaults.
        """
        api = openvino_api()
        core = api.Core()
        if hasattr(api.properties, "enable_mmap"):  # runtimes without it (2022.3) always copy
            core.set_property({"ENABLE_MMAP": mmap_weights})
        properties: Dict[str, object] = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = str(threads)
        if device == "CPU":
            properties["PERFORMANCE_HINT"] = "LATENCY"
            if "ENABLE_CPU_PINNING" in core.get_property(device, "SUPPORTED_PROPERTIES"):  # from OpenVINO 2023.0
                properties["ENABLE_CPU_PINNING"] = pin_threads
        model = read_model(ir_xml, core)
        fault_injection.corrupt_model(model)
        self._compiled = core.compile_model(model, device, properties)
        self._request = self._compiled.create_infer_request()
        self._outputs = {_output_key(port.get_names()): port for port in self._compiled.outputs}
        if fault_injection.swaps_state():
            self._outputs["state_c"], self._outputs["state_h"] = self._outputs["state_h"], self._outputs["state_c"]

    def settings(self) -> Dict[str, str]:
        """What the device actually uses: a hint is only a request (no bf16 on a CPU without it)."""
        out = {}
        supported = self._compiled.get_property("SUPPORTED_PROPERTIES")
        for key in (key for key in self.REPORTED if key in supported):
            value = self._compiled.get_property(key)
            out[key] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
        return out

    def kernels(self) -> List[str]:
        """The kernels the device chose (the runtime model's primitive types, such as 'brgemm_avx2_f32'):
        which instruction set OpenVINO used on this CPU, e.g. under ONEDNN_MAX_CPU_ISA. MLAS kernels
        ('gemm_mlas_f32') choose theirs by CPUID, whatever the limit."""
        kinds = set()
        for op in self._compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "primitiveType" not in info:
                continue
            value = info["primitiveType"]
            kind = str(value.astype(str)) if hasattr(value, "astype") else str(value)
            if not kind.startswith("unknown"):
                kinds.add(kind)
        return sorted(kinds)

    def step(self, window: np.ndarray, state_c: np.ndarray, state_h: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        results = self._request.infer({
            INPUT_NODE: window,
            PREVIOUS_STATE_C: state_c,
            PREVIOUS_STATE_H: state_h,
        })
        logits, new_c, new_h = (np.array(results[self._outputs[key]]) for key in ("logits", "state_c", "state_h"))
        return logits, new_c, new_h

    def close(self) -> None:
        self._request = None
