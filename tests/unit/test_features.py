from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from ds2ir.errors import AudioError
from ds2ir.model import features
from ds2ir.model.architecture import Architecture

ARCH = Architecture()
DATA = Path(__file__).resolve().parents[2] / "data"


def synthetic() -> np.ndarray:
    """0.2 s of a windowed 300 Hz tone plus a chirp: 9 frames at 16 kHz."""
    n = np.arange(ARCH.sample_rate // 5)
    rate = ARCH.sample_rate
    return (
        0.3 * np.sin(2 * np.pi * 300 * n / rate) * np.sin(np.pi * n / len(n))
        + 0.1 * np.sin(2 * np.pi * (500 + n * 0.5) * n / rate)
    ).astype(np.float32)


# TensorFlow 1.15.5's Mfcc(AudioSpectrogram(synthetic())) frames 0 and 8, as DeepSpeech calls them.
TF_FRAME_0 = [
    -55.3004150390625, 32.84973907470703, -1.277933120727539, -7.927572727203369, -7.8033928871154785,
    -2.2840986251831055, 0.6289235353469849, 0.7247712016105652, -1.533720850944519, -3.1284050941467285,
    -3.29290771484375, -2.091404676437378, -0.7982469797134399, 0.10608966648578644, 0.5244353413581848,
    0.8484662771224976, 1.12135910987854, 1.2611089944839478, 1.0726670026779175, 0.6350662708282471,
    0.12975631654262543, -0.23412618041038513, -0.41221293807029724, -0.4404546618461609,
    -0.41445261240005493, -0.342867910861969,
]
TF_FRAME_8 = [
    -46.91349411010742, 10.968668937683105, 2.380326986312866, 16.205333709716797, -10.781993865966797,
    -2.9423177242279053, 3.1801469326019287, -9.384917259216309, -2.9996633529663086, 0.46189308166503906,
    -5.756528854370117, 0.3293050229549408, 1.0797924995422363, -1.8625519275665283, 2.214264392852783,
    1.4840062856674194, -0.20164158940315247, 1.8049042224884033, 0.5766923427581787, -0.19129589200019836,
    0.4583936929702759, -0.27247652411460876, -0.37674739956855774, -0.23832567036151886,
    -0.3115352392196655, -0.18518641591072083,
]


def test_mfcc_matches_recorded_tensorflow_output() -> None:
    mfccs = features.mfcc(synthetic(), ARCH)
    assert mfccs.shape == (9, ARCH.n_input) and mfccs.dtype == np.float32
    np.testing.assert_allclose(mfccs[0], TF_FRAME_0, rtol=0, atol=1e-4)
    np.testing.assert_allclose(mfccs[8], TF_FRAME_8, rtol=0, atol=1e-4)


def tf_filterbank_loop(power: np.ndarray, arch: Architecture) -> np.ndarray:
    """MfccMelFilterbank::Initialize and Compute, transcribed loop for loop."""
    n_bins, channels = len(power), features.MEL_CHANNELS
    lower, upper = features.MEL_LOWER_FREQUENCY_HZ, arch.sample_rate / 2

    def mel(freq: float) -> float:
        return 1127.0 * math.log1p(freq / 700.0)

    mel_low = mel(lower)
    spacing = (mel(upper) - mel_low) / (channels + 1)
    centres = [mel_low + spacing * (i + 1) for i in range(channels + 1)]
    hz_per_bin = 0.5 * arch.sample_rate / (n_bins - 1)
    start, end = int(1.5 + lower / hz_per_bin), int(upper / hz_per_bin)
    band, weight = [0] * n_bins, [0.0] * n_bins
    channel = 0
    for i in range(n_bins):
        melf = mel(i * hz_per_bin)
        if i < start or i > end:
            band[i] = -2
            continue
        while channel < channels and centres[channel] < melf:
            channel += 1
        band[i] = channel - 1
        if band[i] >= 0:
            weight[i] = (centres[band[i] + 1] - melf) / (centres[band[i] + 1] - centres[band[i]])
        else:
            weight[i] = (centres[0] - melf) / (centres[0] - mel_low)
    out = np.zeros(channels)
    for i in range(start, end + 1):
        value = math.sqrt(power[i])
        if band[i] >= 0:
            out[band[i]] += value * weight[i]
        if band[i] + 1 < channels:
            out[band[i] + 1] += value - value * weight[i]
    return out


@pytest.mark.parametrize("arch", [ARCH, Architecture(sample_rate=8000, feature_win_len_ms=32, feature_win_step_ms=20)])
def test_mel_weights_match_tensorflows_loop(arch: Architecture) -> None:
    n_bins = features.fft_length(arch) // 2 + 1
    power = np.random.RandomState(2).uniform(0, 4, n_bins)
    np.testing.assert_allclose(np.sqrt(power) @ features.mel_weights(arch), tf_filterbank_loop(power, arch), rtol=1e-12)


def test_dct_matches_tensorflows_formula() -> None:
    dct = features.dct_matrix(ARCH)
    assert dct.shape == (features.MEL_CHANNELS, ARCH.n_input)
    for i in (0, 1, ARCH.n_input - 1):
        for j in (0, 17, features.MEL_CHANNELS - 1):
            channels = features.MEL_CHANNELS
            expected = math.sqrt(2.0 / channels) * math.cos(i * math.pi / channels * (j + 0.5))
            assert dct[j, i] == pytest.approx(expected, abs=1e-15)


def test_spectrogram_is_a_hann_windowed_power_spectrum() -> None:
    samples = synthetic()
    spec = features.spectrogram(samples, ARCH)
    size, step = ARCH.audio_window_samples, ARCH.audio_step_samples
    n_fft = features.fft_length(ARCH)
    assert n_fft == 512 and spec.shape == (1 + (len(samples) - size) // step, n_fft // 2 + 1)
    frame = samples[2 * step:2 * step + size].astype(np.float64)
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * k / size) for k in range(size)])
    k = np.arange(n_fft // 2 + 1)[:, None]
    dft = (np.exp(-2j * np.pi * k * np.arange(size)[None, :] / n_fft) @ (frame * hann))
    np.testing.assert_allclose(spec[2], np.abs(dft) ** 2, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n_samples, n_frames", [(0, 0), (511, 0), (512, 1), (831, 1), (832, 2), (16000, 49)])
def test_frames_only_where_a_window_fits(n_samples: int, n_frames: int) -> None:
    assert features.mfcc(np.zeros(n_samples, np.float32), ARCH).shape == (n_frames, ARCH.n_input)


def test_silence_gives_the_log_floor_not_nan() -> None:
    mfccs = features.mfcc(np.zeros(4000, np.float32), ARCH)
    assert np.all(np.isfinite(mfccs))
    # TF's Mfcc kernel (tensorflow/core/kernels/mfcc.cc) floors each of its 40 filterbank channels
    # at kFilterbankFloor = 1e-12, and its DCT scales every coefficient by sqrt(2 / 40): the value
    # is derived from those two facts of TF, not from the constants of the module under test.
    floor_c0 = math.sqrt(2.0 / 40) * 40 * math.log(1e-12)
    assert floor_c0 == pytest.approx(-247.13937, abs=1e-5)
    np.testing.assert_allclose(mfccs[:, 0], floor_c0, rtol=1e-6)
    np.testing.assert_allclose(mfccs[:, 1:], 0.0, atol=1e-4)


def frames_for(n_frames: int, arch: Architecture = ARCH) -> np.ndarray:
    """Frame t holds t + 1 everywhere, so zeros mark padding."""
    return np.repeat(np.arange(1, n_frames + 1, dtype=np.float32)[:, None], arch.n_input, axis=1)


@pytest.mark.parametrize("n_frames, n_windows, valid", [(1, 1, 1), (16, 1, 16), (17, 2, 1), (145, 10, 1), (32, 2, 16)])
def test_context_windows_shape_and_valid_steps(n_frames: int, n_windows: int, valid: int) -> None:
    result = features.context_windows(frames_for(n_frames), ARCH)
    assert result.windows.shape == (n_windows, 1, ARCH.n_steps, ARCH.window_width, ARCH.n_input)
    assert result.windows.dtype == np.float32
    assert result.valid_steps == valid and result.n_steps_total == n_frames


@pytest.mark.parametrize("arch", [ARCH, Architecture(n_context=2, n_steps=4, n_input=13)])
def test_each_step_sees_its_neighbours_and_zeros_beyond_the_ends(arch: Architecture) -> None:
    n_frames = 3 * arch.n_steps - 1
    windows, valid = features.context_windows(frames_for(n_frames, arch), arch)
    steps = windows.reshape(-1, arch.window_width, arch.n_input)
    for t in range(len(steps)):
        for offset in range(-arch.n_context, arch.n_context + 1):
            source = t + offset
            expected = source + 1 if t < n_frames and 0 <= source < n_frames else 0
            assert np.all(steps[t, offset + arch.n_context] == expected), (t, offset)
    assert valid == arch.n_steps - 1


def test_no_frames_give_no_windows() -> None:
    result = features.context_windows(np.zeros((0, ARCH.n_input), np.float32), ARCH)
    assert result.windows.shape == (0, 1, ARCH.n_steps, ARCH.window_width, ARCH.n_input)
    assert result.valid_steps == 0 and result.n_steps_total == 0


def test_context_windows_check_the_feature_count() -> None:
    with pytest.raises(ValueError, match="n_frames"):
        features.context_windows(np.zeros((5, ARCH.n_input + 1)), ARCH)


def write_wav(path: Path, ints: np.ndarray) -> Path:
    import wave

    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(ARCH.sample_rate)
        out.writeframes(ints.astype("<i2").tobytes())
    return path


def test_windows_for_silent_file_are_finite(tmp_path: Path) -> None:
    mfccs, result = features.windows_for_file(write_wav(tmp_path / "silence.wav", np.zeros(8000)), ARCH)
    assert len(mfccs) == 1 + (8000 - ARCH.audio_window_samples) // ARCH.audio_step_samples
    assert np.all(np.isfinite(result.windows))


def test_windows_for_too_short_file_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "short.wav", np.ones(ARCH.audio_window_samples - 1))
    with pytest.raises(AudioError, match="fewer than one 32 ms feature window") as caught:
        features.windows_for_file(path, ARCH)
    assert str(path) in str(caught.value)


def test_windows_for_the_shared_recording() -> None:
    mfccs, result = features.windows_for_file(DATA / "LDC93S1.wav", ARCH)
    n_frames = 1 + (46797 - ARCH.audio_window_samples) // ARCH.audio_step_samples
    assert mfccs.shape == (n_frames, ARCH.n_input)
    assert result.windows.shape == (-(-n_frames // ARCH.n_steps), 1, ARCH.n_steps, ARCH.window_width, ARCH.n_input)
    assert result.n_steps_total == n_frames
    np.testing.assert_array_equal(result.windows[0, 0, 0, ARCH.n_context], mfccs[0])
    np.testing.assert_array_equal(result.windows[0, 0, 0, :ARCH.n_context], 0.0)
