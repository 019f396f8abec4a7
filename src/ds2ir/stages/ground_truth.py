"""DeepSpeech's streaming graph in numpy float64: the ground truth both float32 engines are measured against.

Two float32 engines (TensorFlow, OpenVINO) differ by their summation orders, which follow
the CPU's vector width; comparing them only with each other measures the CPU. Each is
instead compared with this float64 computation of the same weights, whose own rounding
(2^-53) is nine orders below float32's, so what is left is each engine's float32 error.

The graph, as ds2ir's and DeepSpeech's exporters freeze it: three dense layers with
clipped ReLU over a flattened context window, one LSTM cell (BlockLSTM: gates
[i, ci, f, o] = [x, h] W + b, c = sigmoid(f + forget_bias) c + sigmoid(i) tanh(ci),
optionally clipped, h = sigmoid(o) tanh(c)), a fourth clipped-ReLU dense layer, a linear
layer and a softmax; window by window, the state carried by the caller. Pure numpy and
importable on Python 3.7 (the freeze image); :func:`from_frozen_graph` reads the weights
with TensorFlow, which only the freeze image has.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping, Tuple

import numpy as np

from ds2ir.errors import VerificationError
from ds2ir.model.architecture import LSTM_SCOPE, Architecture

__all__ = ["DENSE_LAYERS", "Float64Model", "from_frozen_graph", "weight_names"]

#: the dense layers in order; the LSTM sits between layer_3 and layer_5 (DeepSpeech has no layer_4 variables)
DENSE_LAYERS = ("layer_1", "layer_2", "layer_3", "layer_5", "layer_6")
#: the op DeepSpeech's LSTMBlockFusedCell freezes into, whose attributes say how the cell computes
BLOCK_LSTM_OPS = ("BlockLSTM", "BlockLSTMV2")


def weight_names() -> Tuple[str, ...]:
    """The frozen graph's constants the model reads: each dense layer's weights and bias, the LSTM's kernel and bias."""
    dense = tuple(f"{layer}/{part}" for layer in DENSE_LAYERS for part in ("weights", "bias"))
    return dense + (f"{LSTM_SCOPE}/kernel", f"{LSTM_SCOPE}/bias")


class Float64Model:
    """The streaming graph in float64; ``step`` has the TF and OpenVINO models' contract."""

    def __init__(self, weights: Mapping[str, np.ndarray], arch: Architecture, *, forget_bias: float = 0.0,
                 cell_clip: float = -1.0):
        """``forget_bias`` and ``cell_clip`` as the graph's BlockLSTM has them (DeepSpeech: 0 and none)."""
        self.weights = {name: np.asarray(weights[name], dtype=np.float64) for name in weight_names()}
        self.arch = arch
        self.forget_bias = float(forget_bias)
        self.cell_clip = float(cell_clip)

    def _dense(self, layer: str, x: np.ndarray, *, relu: bool = True) -> np.ndarray:
        out = x @ self.weights[f"{layer}/weights"] + self.weights[f"{layer}/bias"]
        return np.minimum(np.maximum(out, 0.0), self.arch.relu_clip) if relu else out

    def step(self, window: np.ndarray, state_c: np.ndarray, state_h: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One window [1, n_steps, width, n_input] and the previous state [1, n_hidden]: softmax
        logits [n_steps, 1, n_classes], new c, new h, all float64."""
        n_steps = window.shape[1]
        x = np.asarray(window, dtype=np.float64).transpose(1, 0, 2, 3).reshape(n_steps, -1)
        for layer in DENSE_LAYERS[:3]:
            x = self._dense(layer, x)
        kernel = self.weights[f"{LSTM_SCOPE}/kernel"]
        bias = self.weights[f"{LSTM_SCOPE}/bias"]
        c = np.asarray(state_c, dtype=np.float64)
        h = np.asarray(state_h, dtype=np.float64)
        outputs = []
        for t in range(n_steps):
            gates = np.concatenate([x[t:t + 1], h], axis=1) @ kernel + bias
            i, ci, f, o = np.split(gates, 4, axis=1)
            c = _sigmoid(f + self.forget_bias) * c + _sigmoid(i) * np.tanh(ci)
            if self.cell_clip > 0:
                c = np.clip(c, -self.cell_clip, self.cell_clip)
            h = _sigmoid(o) * np.tanh(c)
            outputs.append(h)
        x = self._dense("layer_5", np.concatenate(outputs, axis=0))
        raw = self._dense("layer_6", x, relu=False)
        shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
        logits = shifted / shifted.sum(axis=1, keepdims=True)
        return logits[:, None, :], c, h


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the same function, without overflow for large |x|


def from_frozen_graph(frozen_graph: Path, arch: Architecture) -> Float64Model:
    """The float64 model of a frozen graph: its weight constants and its BlockLSTM's forget bias and cell clip.

    A graph without BlockLSTM (the hoisted variant) computes the cell with forget bias 0 and
    no clipping, as :mod:`ds2ir.stages.freeze.graph` writes it. Needs TensorFlow (the freeze image).
    """
    import tensorflow.compat.v1 as tf

    graph_def = tf.GraphDef()
    graph_def.ParseFromString(frozen_graph.read_bytes())
    constants: Dict[str, np.ndarray] = {}
    forget_bias, cell_clip = 0.0, -1.0
    wanted = set(weight_names())
    for node in graph_def.node:
        if node.op == "Const" and node.name in wanted:
            constants[node.name] = tf.make_ndarray(node.attr["value"].tensor)
        elif node.op in BLOCK_LSTM_OPS:
            forget_bias, cell_clip = node.attr["forget_bias"].f, node.attr["cell_clip"].f
    missing = sorted(wanted - set(constants))
    if missing:
        raise VerificationError(
            f"The frozen graph {frozen_graph} lacks the constants {', '.join(missing)}, so its float64 ground truth "
            f"cannot be computed; it is not DeepSpeech's streaming graph as ds2ir knows it (docs/design.md)."
        )
    return Float64Model(constants, arch, forget_bias=forget_bias, cell_clip=cell_clip)
