"""The float64 model: each piece of DeepSpeech's graph, checked on weights whose outputs are known by hand."""
import numpy as np
import pytest

from ds2ir.model.architecture import LSTM_SCOPE, Architecture
from ds2ir.model.verify import random_inputs, stream
from ds2ir.stages import ground_truth

ARCH = Architecture(n_hidden=4, n_steps=2, n_input=3, n_context=1, relu_clip=20.0)
N_CLASSES = 5
KERNEL, LSTM_BIAS = f"{LSTM_SCOPE}/kernel", f"{LSTM_SCOPE}/bias"


def _weights(seed=0, scale=0.3):
    rng = np.random.RandomState(seed)
    shapes = {"layer_1": (ARCH.window_width * ARCH.n_input, ARCH.n_hidden), "layer_2": (ARCH.n_hidden, ARCH.n_hidden),
              "layer_3": (ARCH.n_hidden, ARCH.n_hidden), "layer_5": (ARCH.n_hidden, ARCH.n_hidden),
              "layer_6": (ARCH.n_hidden, N_CLASSES)}
    weights = {}
    for layer, shape in shapes.items():
        weights[f"{layer}/weights"] = rng.normal(0, scale, shape)
        weights[f"{layer}/bias"] = rng.normal(0, scale, shape[1])
    weights[KERNEL] = rng.normal(0, scale, (2 * ARCH.n_hidden, 4 * ARCH.n_hidden))
    weights[LSTM_BIAS] = rng.normal(0, scale, 4 * ARCH.n_hidden)
    return weights


def test_weight_names_are_the_frozen_graphs_constants():
    names = ground_truth.weight_names()
    assert "layer_1/weights" in names and "layer_6/bias" in names and KERNEL in names and "layer_4/weights" not in names


def test_outputs_have_the_tf_graphs_shapes_and_softmax_sums_to_one():
    inputs = random_inputs(ARCH, 1, n_windows=2)
    out = stream(ground_truth.Float64Model(_weights(), ARCH), inputs["windows"], inputs["state_c"], inputs["state_h"])
    assert out["logits"].shape == (2, ARCH.n_steps, 1, N_CLASSES) and out["state_c"].shape == (2,) + ARCH.state_shape
    np.testing.assert_allclose(out["logits"].sum(axis=-1), 1.0, rtol=1e-12)
    assert out["logits"].dtype == np.float64


def test_lstm_cell_with_zero_weights_halves_c_and_squashes_it_into_h():
    """Zero kernel and bias: every gate is sigmoid(0) = 1/2 and tanh(ci) = 0, so c' = c/2 per step, h = tanh(c')/2."""
    weights = _weights()
    weights[KERNEL][:] = 0
    weights[LSTM_BIAS][:] = 0
    c = np.array([[8.0, -4.0, 1.0, 0.0]])
    _, new_c, new_h = ground_truth.Float64Model(weights, ARCH).step(np.zeros(ARCH.input_shape), c, np.zeros_like(c))
    np.testing.assert_allclose(new_c, c / 4)  # two steps
    np.testing.assert_allclose(new_h, 0.5 * np.tanh(c / 4))


def test_forget_bias_and_cell_clip_are_applied_as_blocklstm_does():
    weights = _weights()
    weights[KERNEL][:] = 0
    weights[LSTM_BIAS][:] = 0
    c = np.array([[8.0, -4.0, 1.0, 0.0]])
    window = np.zeros(ARCH.input_shape)
    _, kept, _ = ground_truth.Float64Model(weights, ARCH, forget_bias=50.0).step(window, c, np.zeros_like(c))
    np.testing.assert_allclose(kept, c)  # sigmoid(50) == 1 in float64
    _, clipped, _ = ground_truth.Float64Model(weights, ARCH, forget_bias=50.0, cell_clip=3.0).step(window, c, np.zeros_like(c))
    np.testing.assert_allclose(clipped, [[3.0, -3.0, 1.0, 0.0]])


def test_dense_layers_clip_their_relu_and_the_last_is_linear():
    weights = _weights()
    for layer in ("layer_1", "layer_2", "layer_3"):
        weights[f"{layer}/weights"][:] = 0
    weights["layer_1/bias"][:] = 100.0
    model = ground_truth.Float64Model(weights, ARCH)
    x = np.ones((1, ARCH.window_width * ARCH.n_input))
    np.testing.assert_array_equal(model._dense("layer_1", x), np.full((1, ARCH.n_hidden), ARCH.relu_clip))
    weights["layer_6/bias"][:] = -100.0
    assert (ground_truth.Float64Model(weights, ARCH)._dense("layer_6", np.zeros((1, ARCH.n_hidden)), relu=False) == -100).all()


def test_a_dropped_bias_or_a_changed_weight_changes_the_outputs_far_beyond_rounding():
    inputs = random_inputs(ARCH, 2, n_windows=2)
    reference = stream(ground_truth.Float64Model(_weights(), ARCH), inputs["windows"], inputs["state_c"], inputs["state_h"])
    for name, change in (("layer_2/bias", lambda w: w * 0), ("layer_5/weights", lambda w: w * 1.01)):
        weights = _weights()
        weights[name] = change(weights[name])
        changed = stream(ground_truth.Float64Model(weights, ARCH), inputs["windows"], inputs["state_c"], inputs["state_h"])
        assert np.abs(changed["logits"] - reference["logits"]).max() > 1e-5, name


def test_a_missing_weight_is_named():
    weights = _weights()
    del weights[KERNEL]
    with pytest.raises(KeyError, match="kernel"):
        ground_truth.Float64Model(weights, ARCH)
