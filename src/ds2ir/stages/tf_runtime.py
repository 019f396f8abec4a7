"""Run a frozen DeepSpeech graph with TensorFlow, one window at a time, state carried.

Used in the freeze image (TF 1.15) to produce the reference the IR is compared with.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from ds2ir.errors import MissingInputError
from ds2ir.model.architecture import (
    INPUT_LENGTHS,
    INPUT_NODE,
    LOGITS,
    NEW_STATE_C,
    NEW_STATE_H,
    PREVIOUS_STATE_C,
    PREVIOUS_STATE_H,
)


def graph_node_names(frozen_graph: Path) -> Dict[str, str]:
    """Node name -> op type of a frozen graph, for inspection and tests."""
    import tensorflow.compat.v1 as tf

    graph_def = tf.GraphDef()
    graph_def.ParseFromString(_read(frozen_graph))
    return {node.name: node.op for node in graph_def.node}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise MissingInputError(f"The frozen graph {path} does not exist; run the freeze stage ('invoke freeze').") from exc


class TFStreamingModel:
    """The frozen graph as an application streams it: window in, logits and new state out."""

    def __init__(self, frozen_graph: Path, n_steps: int, *, threads: int = 1):
        """``threads``: TF's intra-op threads; one keeps the reference's reductions in a fixed order."""
        import tensorflow.compat.v1 as tf

        graph_def = tf.GraphDef()
        graph_def.ParseFromString(_read(frozen_graph))
        self._graph = tf.Graph()
        with self._graph.as_default():
            tf.import_graph_def(graph_def, name="")
        self._session = tf.Session(
            graph=self._graph,
            config=tf.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1),
        )
        self._lengths = np.array([n_steps], dtype=np.int32)
        self._fetches = [
            self._graph.get_tensor_by_name(name + ":0")
            for name in (LOGITS, NEW_STATE_C, NEW_STATE_H)
        ]

    def step(self, window: np.ndarray, state_c: np.ndarray, state_h: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        feeds = {
            INPUT_NODE + ":0": window,
            INPUT_LENGTHS + ":0": self._lengths,
            PREVIOUS_STATE_C + ":0": state_c,
            PREVIOUS_STATE_H + ":0": state_h,
        }
        logits, c, h = self._session.run(self._fetches, feeds)
        return logits, c, h

    def close(self) -> None:
        self._session.close()

