"""DeepSpeech 0.8.2's input features in numpy, as TensorFlow's audio ops compute them.

DeepSpeech runs ``AudioSpectrogram(window_size, stride, magnitude_squared=True)`` then
``Mfcc(sample_rate, dct_coefficient_count=n_input, upper_frequency_limit=sample_rate/2)``
(feeding.py, audio_to_features). This module reproduces those kernels
(tensorflow/core/kernels/spectrogram.cc, mfcc.cc, mfcc_mel_filterbank.cc,
mfcc_dct.cc) step by step, including where they round to float32, so that the IR can
be fed without TensorFlow. :mod:`ds2ir.stages.tf_features` runs the real ops to check this.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Tuple, TypeVar, Union

import numpy as np

from ds2ir.errors import AudioError
from ds2ir.model.architecture import MEL_CHANNELS, Architecture
from ds2ir.model.audio import read_wav

__all__ = [
    "FeatureWindows",
    "context_windows",
    "dct_matrix",
    "fft_length",
    "mel_weights",
    "mfcc",
    "spectrogram",
    "windows_for_file",
    "windows_for_samples",
]

# Mfcc op attributes DeepSpeech leaves at their defaults (MEL_CHANNELS: config.py), and the kernel's log floor.
MEL_LOWER_FREQUENCY_HZ = 20.0
FILTERBANK_FLOOR = 1e-12


class FeatureWindows(NamedTuple):
    """Network inputs for one recording, in n_steps-sized batches for the streaming graph.

    ``windows`` is float32 ``[n_windows, 1, n_steps, 2*n_context+1, n_input]``; only the
    first ``valid_steps`` steps of the last window are real, the rest are zeros.
    """

    windows: np.ndarray
    valid_steps: int

    @property
    def n_steps_total(self) -> int:
        """Real time steps (one per MFCC frame) across all windows."""
        if len(self.windows) == 0:
            return 0
        return (len(self.windows) - 1) * self.windows.shape[2] + self.valid_steps


def fft_length(arch: Architecture) -> int:
    """TF's spectrogram FFT size: the next power of two >= the window."""
    return 1 << (arch.audio_window_samples - 1).bit_length()


def spectrogram(samples: np.ndarray, arch: Architecture) -> np.ndarray:
    """Squared-magnitude spectrogram ``[n_frames, fft_length/2 + 1]`` float32.

    Periodic Hann window, frames only where a whole window fits, FFT in float64 and
    the result rounded to float32, like AudioSpectrogram on float input.
    """
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"samples must be one-dimensional, got shape {x.shape}")
    size, step = arch.audio_window_samples, arch.audio_step_samples
    n_frames = 0 if len(x) < size else 1 + (len(x) - size) // step
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n_frames, size), strides=(step * x.strides[0], x.strides[0]), writeable=False
    )
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)
    spectrum = np.fft.rfft(frames.astype(np.float64) * hann, n=fft_length(arch), axis=1)
    return (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)


_Frequency = TypeVar("_Frequency", np.ndarray, np.float64)


def _freq_to_mel(freq: _Frequency) -> _Frequency:
    return 1127.0 * np.log1p(freq / 700.0)


def mel_weights(arch: Architecture) -> np.ndarray:
    """TF's MfccMelFilterbank as a ``[n_bins, MEL_CHANNELS]`` float64 matrix.

    TF spaces MEL_CHANNELS + 1 centres evenly in mel above the lower limit (the last
    one is the upper limit), maps each bin in [start, end] to the channel whose
    triangle's falling edge it lies on, gives that channel weight w and the next one
    1 - w, and skips DC and bins outside the limits.
    """
    n_bins = fft_length(arch) // 2 + 1
    lower, upper = MEL_LOWER_FREQUENCY_HZ, arch.sample_rate / 2.0
    mel_low, mel_high = _freq_to_mel(np.float64(lower)), _freq_to_mel(np.float64(upper))
    spacing = (mel_high - mel_low) / (MEL_CHANNELS + 1)
    centres = mel_low + spacing * np.arange(1, MEL_CHANNELS + 2)
    hz_per_bin = 0.5 * arch.sample_rate / (n_bins - 1)
    start = int(1.5 + lower / hz_per_bin)
    end = int(upper / hz_per_bin)

    bins = np.arange(start, end + 1)
    mels = _freq_to_mel(bins * hz_per_bin)
    # Number of centres below each bin's mel, minus one: -1 before the first centre.
    band = np.searchsorted(centres[:MEL_CHANNELS], mels, side="left") - 1
    right = centres[band + 1]
    left = np.where(band >= 0, centres[np.maximum(band, 0)], mel_low)
    falling = (right - mels) / (right - left)

    weights = np.zeros((n_bins, MEL_CHANNELS + 1))  # column MEL_CHANNELS collects what TF drops
    weights[bins, np.where(band >= 0, band, MEL_CHANNELS)] += falling
    weights[bins, band + 1] += 1.0 - falling
    return weights[:, :MEL_CHANNELS]


def dct_matrix(arch: Architecture) -> np.ndarray:
    """TF's MfccDct as a ``[MEL_CHANNELS, n_input]`` float64 matrix.

    A DCT-II scaled by sqrt(2 / MEL_CHANNELS) for every coefficient, DC included, so
    not orthonormal: coefficient 0 is sqrt(2) times the orthonormal one.
    """
    j = np.arange(MEL_CHANNELS)[:, None] + 0.5
    i = np.arange(arch.n_input)[None, :]
    return np.sqrt(2.0 / MEL_CHANNELS) * np.cos(i * (np.pi / MEL_CHANNELS) * j)


def mfcc(samples: np.ndarray, arch: Architecture) -> np.ndarray:
    """MFCCs ``[n_frames, n_input]`` float32 of float32 samples at arch.sample_rate.

    The mel filterbank sums magnitudes (square roots of the power spectrum); energies
    are floored at FILTERBANK_FLOOR before the log, so silence gives finite features.
    """
    power = spectrogram(samples, arch).astype(np.float64)
    mel = np.sqrt(power) @ mel_weights(arch)
    log_mel = np.log(np.maximum(mel, FILTERBANK_FLOOR))
    return (log_mel @ dct_matrix(arch)).astype(np.float32)


def context_windows(mfccs: np.ndarray, arch: Architecture) -> FeatureWindows:
    """Each step t sees frames t-n_context..t+n_context (zeros beyond the ends), in batches of n_steps.

    Matches DeepSpeech's native client, whose MFCC buffer starts with n_context zero
    frames and is flushed with n_context more, and whose last batch is zero-padded.
    """
    frames = np.asarray(mfccs, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[1] != arch.n_input:
        raise ValueError(f"mfccs must have shape [n_frames, {arch.n_input}], got {frames.shape}")
    n_frames, width = len(frames), arch.window_width
    n_windows = -(-n_frames // arch.n_steps)
    padded = np.zeros((n_windows * arch.n_steps + width - 1, arch.n_input), dtype=np.float32)
    padded[arch.n_context:arch.n_context + n_frames] = frames
    # Step t's window starts at padded row t, i.e. frame t - n_context.
    index = np.arange(n_windows * arch.n_steps)[:, None] + np.arange(width)[None, :]
    steps = padded[index]
    steps[n_frames:] = 0.0
    windows = steps.reshape(n_windows, 1, arch.n_steps, width, arch.n_input)
    valid = n_frames - (n_windows - 1) * arch.n_steps if n_windows else 0
    return FeatureWindows(windows, valid)


def windows_for_samples(samples: np.ndarray, arch: Architecture, *, source: Union[str, Path] = "audio") -> Tuple[np.ndarray, FeatureWindows]:
    """The MFCCs and the network's input windows for samples at arch.sample_rate.

    Raises AudioError if the recording is shorter than one feature window.
    """
    frames = mfcc(samples, arch)
    if len(frames) == 0:
        raise AudioError(
            f"{source}: the recording has {len(samples)} samples, fewer than one {arch.feature_win_len_ms} ms "
            f"feature window ({arch.audio_window_samples} samples); supply a longer recording."
        )
    return frames, context_windows(frames, arch)


def windows_for_file(path: Union[str, Path], arch: Architecture) -> Tuple[np.ndarray, FeatureWindows]:
    """The MFCCs and the network's input windows for a WAV file (see windows_for_samples)."""
    return windows_for_samples(read_wav(path, sample_rate=arch.sample_rate), arch, source=path)
