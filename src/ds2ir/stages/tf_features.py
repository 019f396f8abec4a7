"""DeepSpeech's features computed by TensorFlow's own audio ops, to check :mod:`ds2ir.model.features`.

Only usable where TensorFlow is installed (the TF 1.15 freeze image); TensorFlow is
imported inside the functions so that importing this module never needs it. The ops
are called exactly as DeepSpeech 0.8.2's feeding.py calls them, Mfcc's other
attributes left at their defaults, so a difference from the numpy version shows up.

``invoke verify`` runs this check on every recording (the freeze image's ``verify-tf``).
"""
from __future__ import annotations

import numpy as np

from ds2ir.model import fault_injection, features
from ds2ir.model.architecture import Architecture

__all__ = ["max_abs_difference", "mfcc", "spectrogram"]


def _run(samples: np.ndarray, arch: Architecture, *, with_mfcc: bool) -> np.ndarray:
    import tensorflow as tf
    from tensorflow.python.ops import gen_audio_ops

    graph = tf.Graph()
    with graph.as_default():
        audio = tf.constant(np.asarray(samples, dtype=np.float32)[:, None])  # [samples, channels]
        result = gen_audio_ops.audio_spectrogram(
            audio,
            window_size=arch.audio_window_samples,
            stride=arch.audio_step_samples,
            magnitude_squared=True,
        )
        if with_mfcc:
            result = gen_audio_ops.mfcc(
                spectrogram=result,
                sample_rate=arch.sample_rate,
                dct_coefficient_count=arch.n_input,
                upper_frequency_limit=arch.sample_rate / 2,
            )
            result = tf.reshape(result, [-1, arch.n_input])
        else:
            result = result[0]
    with tf.compat.v1.Session(graph=graph) as session:
        return session.run(result)


def spectrogram(samples: np.ndarray, arch: Architecture) -> np.ndarray:
    """TF's AudioSpectrogram ``[n_frames, n_bins]`` of float32 samples (needs ≥ one window)."""
    return _run(samples, arch, with_mfcc=False)


def mfcc(samples: np.ndarray, arch: Architecture) -> np.ndarray:
    """TF's Mfcc ``[n_frames, n_input]`` float32, as DeepSpeech computes it (needs ≥ one window)."""
    return _run(samples, arch, with_mfcc=True)


def max_abs_difference(samples: np.ndarray, arch: Architecture) -> float:
    """Largest |numpy - TF| over all MFCC values of the same samples."""
    ours, theirs = fault_injection.corrupt_features(features.mfcc(samples, arch)), mfcc(samples, arch)
    if ours.shape != theirs.shape:
        raise AssertionError(f"numpy MFCCs have shape {ours.shape}, TF's {theirs.shape}")
    return float(np.max(np.abs(ours.astype(np.float64) - theirs)))

