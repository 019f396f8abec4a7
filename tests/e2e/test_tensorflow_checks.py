"""Checks that need TensorFlow, run in the freeze image (TensorFlow 1.15 is not on the host).

Each runs a short script with the image's own ds2ir and TensorFlow; the checkout's data/
is mounted read-only, the script prints one JSON line and the assertions happen here.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

from ds2ir.host.docker import Docker
from ds2ir.host.images import ensure_stage_image
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file
from tests._support.stages import run_stage
from tests.e2e.helpers import PROJECT, last_json

LDC93S1_TEXT = "she had your dark suit in greasy wash water all year"


def in_freeze_image(docker: Docker, artifacts: Path, script: str) -> dict:
    image = ensure_stage_image(docker, load_target(targets_file(), "synthetic-small").freeze_image, PROJECT)
    output = run_stage(docker, step="tensorflow check", image=image, args=["-c", textwrap.dedent(script)],
                              artifacts=artifacts, targets=targets_file(), read_only={PROJECT / "data": "/data"},
                              capture=True, entrypoint="python")
    return last_json(output)


def test_numpy_features_match_tensorflow_ops(docker, tmp_path):
    """features.mfcc (numpy, what verify feeds both runtimes) equals TF's AudioSpectrogram + Mfcc."""
    differences = in_freeze_image(docker, tmp_path, """
        import json, warnings
        warnings.simplefilter("ignore")
        import numpy as np
        from ds2ir.model import features
        from ds2ir.stages import tf_features
        from ds2ir.model.audio import read_wav
        from ds2ir.model.architecture import Architecture
        arch = Architecture()
        rng = np.random.RandomState(1)
        n = np.arange(arch.sample_rate // 5)
        tone = (0.3 * np.sin(2 * np.pi * 300 * n / arch.sample_rate)).astype(np.float32)
        signals = {"tone": tone, "silence": np.zeros(4000, np.float32),
                   "noise": rng.uniform(-1, 1, 5000).astype(np.float32),
                   "LDC93S1": read_wav("/data/LDC93S1.wav", sample_rate=arch.sample_rate)}
        result = {}
        for name, samples in signals.items():
            ours, theirs = features.mfcc(samples, arch), tf_features.mfcc(samples, arch)
            assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
            result[name] = [float(np.max(np.abs(ours - theirs))), int(ours.shape[0])]
        print(json.dumps(result))
    """)
    assert set(differences) == {"tone", "silence", "noise", "LDC93S1"}
    for name, (difference, frames) in differences.items():
        assert frames > 0 and difference <= 1e-4, (name, difference)
    assert differences["LDC93S1"][1] > 100  # the whole 2.9 s recording, not an empty read


def test_a_short_training_run_lowers_the_loss_and_writes_the_exported_variables(docker, tmp_path):
    trained = in_freeze_image(docker, tmp_path, """
        import json, warnings
        warnings.simplefilter("ignore")
        from pathlib import Path
        import tensorflow.compat.v1 as tf
        from ds2ir.stages.freeze import checkpoint, train
        from ds2ir.model.architecture import Alphabet, Architecture, model_variables
        arch, alphabet = Architecture(n_hidden=8), Alphabet.default()
        directory = Path("/artifacts/ckpt")
        result = train.train_checkpoint(directory, wav=Path("/data/LDC93S1.wav"),
                                        transcript_file=Path("/data/LDC93S1.txt"), arch=arch, alphabet=alphabet,
                                        seed=3, epochs=5, learning_rate=0.01)
        prefix = checkpoint.find_prefix(directory)
        checkpoint.check(prefix, arch, alphabet)
        print(json.dumps({
            "target": result.target, "epochs": result.epochs, "loss": result.loss, "initial_loss": result.initial_loss,
            "prefix": prefix.name, "stored": {name: list(shape) for name, shape in tf.train.list_variables(str(prefix))},
            "expected": {v.name: list(v.shape) for v in model_variables(arch, alphabet.n_classes)},
            "global_step": int(tf.train.load_variable(str(prefix), "global_step")),
            "alphabet_round_trips": Alphabet.load(directory / "alphabet.txt") == alphabet,
        }))
    """)
    assert trained["target"] == LDC93S1_TEXT and trained["epochs"] == 5
    assert 0 < trained["loss"] < trained["initial_loss"]
    assert trained["prefix"] == "best_dev-5" and trained["global_step"] == 5
    assert trained["stored"] == dict(trained["expected"], global_step=[])
    assert trained["alphabet_round_trips"] is True
    assert (tmp_path / "ckpt" / "best_dev-5.index").is_file()  # written through the artifacts mount
