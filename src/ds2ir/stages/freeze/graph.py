"""DeepSpeech 0.8.2's streaming inference graph, written for TensorFlow 1.15.

Facts from DeepSpeech v0.8.2 ``train.py`` (create_model, create_inference_graph,
export): three clipped-ReLU dense layers over a [n_steps, 2*n_context+1, n_input]
window, an LSTMBlockFusedCell named like the CuDNN-compatible cell, a fourth dense
layer, a linear output layer reshaped as ``raw_logits``, softmax ``logits``, the new
LSTM state, the ``input_samples -> mfccs`` feature subgraph and the ``metadata_*``
constants, with ``metadata_language`` at the exporter's default. The same nodes, names,
attributes and order as DeepSpeech.py --export_dir writes (tests/e2e/test_upstream_graph.py).
Only imported where TensorFlow 1.15 is installed (the freeze image).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import tensorflow.compat.v1 as tf

from ds2ir.model.architecture import (
    EXPORT_LANGUAGE,
    INPUT_LENGTHS,
    INPUT_NODE,
    INPUT_SAMPLES,
    LOGITS,
    LSTM_FINAL_C,
    LSTM_FINAL_H,
    LSTM_SCOPE,
    MFCCS,
    NEW_STATE_C,
    NEW_STATE_H,
    PREVIOUS_STATE_C,
    PREVIOUS_STATE_H,
    RAW_LOGITS,
    Alphabet,
    Architecture,
)

tf.logging.set_verbosity(tf.logging.ERROR)  # TF 1.15's deprecation notices are not for our users


def _dense(name: str, x: tf.Tensor, units: int, relu_clip: float, *, relu: bool = True) -> tf.Tensor:
    # DeepSpeech places these variables on the CPU (variable_on_cpu): their frozen reads keep the device.
    with tf.variable_scope(name), tf.device("/cpu:0"):
        bias = tf.get_variable("bias", [units], initializer=tf.zeros_initializer())
        weights = tf.get_variable("weights", [x.shape[-1], units], initializer=tf.glorot_uniform_initializer())
    output = tf.nn.bias_add(tf.matmul(x, weights), bias)
    if relu:
        output = tf.minimum(tf.nn.relu(output), relu_clip)
    return output


def model_logits(x: tf.Tensor, lengths: tf.Tensor, initial_state: Optional[tf.nn.rnn_cell.LSTMStateTuple],
                 arch: Architecture, n_classes: int, *, lstm: str = "fused") -> Tuple[tf.Tensor, tf.nn.rnn_cell.LSTMStateTuple]:
    """DeepSpeech's layers over time-major rows ``x`` [T, window_width*n_input]: raw logits [T, 1, C] and the LSTM state.

    Shared by the inference graph (placeholders, carried state) and training (the whole
    utterance, zero state), so both restore and save the same variables. ``lstm``
    "fused" is DeepSpeech's LSTMBlockFusedCell (BlockLSTM); "hoisted" computes the same
    cell unrolled, with the input projection of all steps as one matrix product.
    """
    x = _dense("layer_1", x, arch.n_hidden, arch.relu_clip)
    x = _dense("layer_2", x, arch.n_hidden, arch.relu_clip)
    x = _dense("layer_3", x, arch.n_hidden, arch.relu_clip)
    x = tf.reshape(x, [-1, 1, arch.n_hidden])
    run_lstm = _hoisted_lstm if lstm == "hoisted" else _fused_lstm
    output, state = run_lstm(x, lengths, initial_state, arch.n_hidden)
    x = tf.reshape(output, [-1, arch.n_hidden])
    x = _dense("layer_5", x, arch.n_hidden, arch.relu_clip)
    x = _dense("layer_6", x, n_classes, arch.relu_clip, relu=False)
    return tf.reshape(x, [-1, 1, n_classes], name=RAW_LOGITS), state


def _fused_lstm(x: tf.Tensor, lengths: tf.Tensor, initial_state: Optional[tf.nn.rnn_cell.LSTMStateTuple],
                n_hidden: int) -> Tuple[tf.Tensor, tf.nn.rnn_cell.LSTMStateTuple]:
    """DeepSpeech's cell: one BlockLSTM op; its final state is gathered at ``lengths`` (GatherNd, GatherNd_1)."""
    from tensorflow.contrib.rnn import LSTMBlockFusedCell  # contrib loads slowly: only when building

    scope, cell_name = LSTM_SCOPE.rsplit("/", 1)
    with tf.variable_scope(scope):
        cell = LSTMBlockFusedCell(n_hidden, forget_bias=0, name=cell_name)
        return cell(x, dtype=tf.float32, sequence_length=lengths, initial_state=initial_state)


def _hoisted_lstm(x: tf.Tensor, lengths: tf.Tensor, initial_state: Optional[tf.nn.rnn_cell.LSTMStateTuple],
                  n_hidden: int) -> Tuple[tf.Tensor, tf.nn.rnn_cell.LSTMStateTuple]:
    """The same cell unrolled over the window's static steps, reading the kernel's input half once.

    BlockLSTM computes [i, ci, f, o] = [x, h] W + b, c = sigmoid(f) c + sigmoid(i) tanh(ci),
    h = sigmoid(o) tanh(c) (forget bias 0, no clipping, no peepholes). [x, h] W is
    x W_x + h W_h, and x W_x + b does not depend on the recurrence: one [T, n] x [n, 4n]
    product for all steps, so per step only W_h is read. Steps past ``lengths`` keep the
    state and output zeros, as BlockLSTM's wrapper does; the final state tensors carry
    the names the fused graph's GatherNd ops have, so mo's --output is the same.
    """
    with tf.variable_scope(LSTM_SCOPE):
        kernel = tf.get_variable("kernel", [2 * n_hidden, 4 * n_hidden])
        bias = tf.get_variable("bias", [4 * n_hidden], initializer=tf.zeros_initializer())
    steps = int(x.shape[0])
    projected = tf.nn.bias_add(tf.matmul(tf.reshape(x, [steps, n_hidden]), kernel[:n_hidden]), bias)
    recurrent = kernel[n_hidden:]
    assert initial_state is not None, "the hoisted cell runs only in the inference graph, which carries the state"
    c, h = initial_state
    outputs = []
    for t in range(steps):
        i, ci, f, o = tf.split(projected[t:t + 1] + tf.matmul(h, recurrent), 4, axis=1)
        new_c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(ci)
        new_h = tf.sigmoid(o) * tf.tanh(new_c)
        live = tf.less(t, lengths)
        c, h = tf.where(live, new_c, c), tf.where(live, new_h, h)
        outputs.append(tf.where(live, new_h, tf.zeros_like(new_h)))
    state = tf.nn.rnn_cell.LSTMStateTuple(tf.identity(c, name=LSTM_FINAL_C), tf.identity(h, name=LSTM_FINAL_H))
    return tf.stack(outputs), state


def _feature_subgraph(arch: Architecture) -> tf.Tensor:
    """input_samples (one audio window) -> mfccs, as the native client computes features."""
    samples = tf.placeholder(tf.float32, [arch.audio_window_samples], name=INPUT_SAMPLES)
    spectrogram = tf.raw_ops.AudioSpectrogram(
        input=tf.expand_dims(samples, -1),
        window_size=arch.audio_window_samples,
        stride=arch.audio_step_samples,
        magnitude_squared=True,
    )
    mfccs = tf.raw_ops.Mfcc(
        spectrogram=spectrogram,
        sample_rate=arch.sample_rate,
        dct_coefficient_count=arch.n_input,
        upper_frequency_limit=arch.sample_rate / 2,
    )
    return tf.identity(tf.reshape(mfccs, [-1, arch.n_input]), name=MFCCS)


def build_inference_graph(arch: Architecture, alphabet: Alphabet, *, lstm: str = "fused") -> Dict[str, tf.Tensor]:
    """Build the batch-1 streaming graph in the default graph; return its output tensors."""
    n_classes = alphabet.n_classes
    mfccs = _feature_subgraph(arch)
    window = tf.placeholder(tf.float32, list(arch.input_shape), name=INPUT_NODE)
    lengths = tf.placeholder(tf.int32, [1], name=INPUT_LENGTHS)
    previous_c = tf.placeholder(tf.float32, list(arch.state_shape), name=PREVIOUS_STATE_C)
    previous_h = tf.placeholder(tf.float32, list(arch.state_shape), name=PREVIOUS_STATE_H)

    # [1, steps, width, features] -> time-major rows of one flattened context window each.
    x = tf.reshape(tf.transpose(window, perm=[1, 0, 2, 3]), [-1, arch.window_width * arch.n_input])
    raw_logits, state = model_logits(x, lengths, tf.nn.rnn_cell.LSTMStateTuple(previous_c, previous_h), arch, n_classes,
                                     lstm=lstm)

    outputs = {
        LOGITS: tf.nn.softmax(raw_logits, name=LOGITS),
        NEW_STATE_C: tf.identity(state.c, name=NEW_STATE_C),
        NEW_STATE_H: tf.identity(state.h, name=NEW_STATE_H),
        MFCCS: mfccs,
    }
    metadata = {
        "metadata_version": arch.graph_version,
        "metadata_sample_rate": arch.sample_rate,
        "metadata_feature_win_len": arch.feature_win_len_ms,
        "metadata_feature_win_step": arch.feature_win_step_ms,
        "metadata_beam_width": arch.beam_width,
    }
    for name, value in metadata.items():
        outputs[name] = tf.constant([value], name=name)
    outputs["metadata_alphabet"] = tf.constant([alphabet.serialize()], name="metadata_alphabet")
    outputs["metadata_language"] = tf.constant([EXPORT_LANGUAGE.encode("utf-8")], name="metadata_language")
    return outputs
