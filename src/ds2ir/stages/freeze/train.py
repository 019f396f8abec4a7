"""Overfit DeepSpeech 0.8.2's architecture on one utterance, to get a checkpoint that transcribes it.

A release checkpoint is large and slow to fetch; a synthetic one has the right shapes
but says nothing. A small model overfitted on LDC93S1 is both cheap and meaningful: its
frozen graph and IR must print the training sentence exactly, so any export or runtime
error that changes the text shows. Training sees the same numpy features and context
windows as inference (:mod:`ds2ir.model.features`) and the same layers, names and shapes as the
exporter restores (:mod:`ds2ir.stages.freeze.graph`). One thread, numpy initial values and a fixed
number of steps make the checkpoint bytes reproducible. Runs where TensorFlow 1.15 is
installed (the freeze image); :func:`normalize_transcript` is plain Python.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ds2ir.errors import AudioError, ConfigError, MissingInputError
from ds2ir.model import decode, features
from ds2ir.model.architecture import Alphabet, Architecture, model_variables
from ds2ir.stages.freeze import checkpoint

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_LEARNING_RATE", "DEFAULT_N_HIDDEN", "TrainingResult",
           "normalize_transcript", "train_checkpoint", "utterance_inputs"]

# LDC93S1 on 2 cores, seeds 0-12: exact greedy text after 90-220 steps, loss ~0.05 at
# 300, ~7 s. Twice DeepSpeech's rate converges faster without oscillating (0.003 did).
DEFAULT_N_HIDDEN = 100
DEFAULT_EPOCHS = 300
DEFAULT_LEARNING_RATE = 0.002
# DeepSpeech 0.8.2's Adam settings (flags.py: beta1, beta2, epsilon).
ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON = 0.9, 0.999, 1e-8

# TIMIT/LDC transcripts start with the utterance's first and last sample offsets.
_SAMPLE_OFFSETS = re.compile(r"^\s*\d+\s+\d+(\s+|$)")


class TrainingResult(NamedTuple):
    """What a training run reached, for logs and the build's report (``._asdict()`` is JSON-ready)."""

    initial_loss: float
    loss: float
    seconds: float
    transcript: str
    target: str
    epochs: int


def normalize_transcript(text: str, alphabet: Alphabet, *, source: str = "transcript") -> str:
    """The transcript as CTC labels can spell it, the way DeepSpeech's LDC93S1 importer writes it.

    Drops TIMIT's two leading sample offsets, lowercases, turns whitespace runs into one
    space and drops punctuation the alphabet lacks. A letter or digit the alphabet lacks
    would silently change the words, so it raises ConfigError instead.
    """
    text = _SAMPLE_OFFSETS.sub("", text).lower()
    kept = []
    for char in text:
        if char in alphabet.labels:
            kept.append(char)
        elif char.isspace():
            kept.append(" ")
        elif char.isalnum():
            raise ConfigError(
                f"the transcript has {char!r}, which the alphabet ({len(alphabet.labels)} labels) cannot spell; "
                f"write it out in the alphabet's characters or use an alphabet that has it.",
                file=source,
            )
    normalized = " ".join("".join(kept).split())
    if not normalized:
        raise ConfigError("the transcript has no characters the alphabet can spell", file=source)
    if " " in normalized and " " not in alphabet.labels:
        raise ConfigError("the transcript has several words but the alphabet has no space label", file=source)
    return normalized


def utterance_inputs(wav: Path, arch: Architecture) -> np.ndarray:
    """Context windows ``[T, 2*n_context+1, n_input]`` of a WAV, exactly as streaming inference sees them.

    Built by features.windows_for_file and unbatched, so training and inference cannot
    disagree on padding or framing.
    """
    frames, batched = features.windows_for_file(wav, arch)
    steps = batched.windows.reshape(-1, arch.window_width, arch.n_input)
    return np.ascontiguousarray(steps[: len(frames)])


def train_checkpoint(
    directory: Path,
    *,
    wav: Path,
    transcript_file: Path,
    arch: Architecture,
    alphabet: Alphabet,
    seed: int,
    epochs: int = DEFAULT_EPOCHS,
    learning_rate: float = DEFAULT_LEARNING_RATE,
) -> TrainingResult:
    """Train on one utterance (batch 1, CTC, Adam, no dropout) and save it in the release layout.

    One epoch is one Adam step on the whole utterance. The checkpoint holds only the
    variables the exporter restores (checkpoint.model_variables) and global_step = epochs.
    The result's transcript is the greedy decoding of the trained training graph.
    """
    if epochs < 1:
        raise ConfigError(f"epochs must be at least 1, got {epochs}")
    try:
        text = transcript_file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise MissingInputError(f"The transcript {transcript_file} does not exist.") from exc
    target = normalize_transcript(text, alphabet, source=str(transcript_file))
    labels = [alphabet.labels.index(char) for char in target]
    inputs = utterance_inputs(wav, arch)
    # CTC needs a step per label plus a blank between each repeated pair.
    needed = len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))
    if len(inputs) < needed:
        raise AudioError(
            f"{wav}: {len(inputs)} feature frames cannot align the {len(labels)}-character transcript "
            f"(CTC needs {needed}); use the recording that goes with {transcript_file}."
        )

    import tensorflow.compat.v1 as tf  # after the checks, so they work without TensorFlow

    from ds2ir.stages.freeze.graph import model_logits

    n_classes = alphabet.n_classes
    expected = model_variables(arch, n_classes)
    start_values = checkpoint.glorot_variables(arch, n_classes, seed, bias_limit=0.0)

    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(seed)
        x = tf.constant(inputs.reshape(len(inputs), -1))
        logits, _ = model_logits(x, [len(inputs)], None, arch, n_classes)
        sparse_labels = tf.SparseTensor(
            indices=[[0, i] for i in range(len(labels))], values=np.array(labels, np.int32),
            dense_shape=[1, len(labels)],
        )
        loss = tf.reduce_mean(tf.nn.ctc_loss(sparse_labels, logits, [len(inputs)]))
        variables = {v.op.name: v for v in tf.global_variables()}
        found = sorted((name, tuple(v.shape.as_list())) for name, v in variables.items())
        if found != [(v.name, v.shape) for v in expected]:  # a bug here, not a user error
            raise AssertionError(f"training variables {found} differ from checkpoint.model_variables")
        optimizer = tf.train.AdamOptimizer(learning_rate, ADAM_BETA1, ADAM_BETA2, ADAM_EPSILON)
        train_op = optimizer.minimize(loss)
        init = tf.global_variables_initializer()
        graph.finalize()
        with tf.Session(graph=graph, config=checkpoint.single_thread_config()) as session:
            session.run(init)
            for name, variable in variables.items():
                variable.load(start_values[name], session)
            initial_loss = session.run(loss)
            started = time.perf_counter()
            for _ in range(epochs):
                session.run(train_op)
            seconds = time.perf_counter() - started
            final_loss, final_logits, trained = session.run([loss, logits, variables])
    checkpoint.save(directory, trained, alphabet=alphabet, arch=arch, global_step=epochs)
    return TrainingResult(
        initial_loss=float(initial_loss),
        loss=float(final_loss),
        seconds=round(seconds, 3),
        transcript=decode.greedy(final_logits, alphabet),
        target=target,
        epochs=epochs,
    )
