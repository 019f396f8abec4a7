from __future__ import annotations

import struct
import warnings
import wave
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from ds2ir.errors import AudioError, MissingInputError
from ds2ir.model.architecture import Architecture
from ds2ir.model.audio import AudioConversionWarning, read_wav, resample
from tests._support.fifo import fifo

ARCH = Architecture()
RATE = ARCH.sample_rate
DATA = Path(__file__).resolve().parents[2] / "data"


def wav_bytes(
    data: bytes,
    *,
    code: int = 1,
    channels: int = 1,
    rate: int = RATE,
    bits: int = 16,
    extensible: bool = False,
    data_size: Optional[int] = None,
) -> bytes:
    """A RIFF/WAVE file; data_size can lie about the data chunk's length."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE if extensible else code, channels, rate, rate * align, align, bits)
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", code) + guid_tail
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"LIST" + struct.pack("<I", 5) + b"INFO!\x00"  # odd-sized chunk with pad byte
    chunks += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def write(tmp_path: Path, content: bytes, name: str = "audio.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_native_16_bit_mono_is_bit_exact(tmp_path: Path) -> None:
    ints = np.array([0, 1, -1, 32767, -32768, 1234], dtype="<i2")
    path = tmp_path / "native.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(ints.tobytes())
    samples = read_wav(path, sample_rate=RATE)
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, ints.astype(np.float32) / 32768)


def test_extensible_header_is_understood(tmp_path: Path) -> None:
    ints = np.array([5, -7, 300], dtype="<i2")
    path = write(tmp_path, wav_bytes(ints.tobytes(), extensible=True))
    np.testing.assert_array_equal(read_wav(path, sample_rate=RATE), ints / 32768)


def test_8_bit_pcm_is_converted(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(bytes([0, 128, 255, 64]), bits=8))
    np.testing.assert_array_equal(read_wav(path, sample_rate=RATE), [-1.0, 0.0, 127 / 128, -0.5])


def test_24_bit_pcm_is_converted(tmp_path: Path) -> None:
    values = [-(1 << 23), -1, 0, 1, (1 << 23) - 1, 0x123456]
    raw = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    samples = read_wav(write(tmp_path, wav_bytes(raw, bits=24)), sample_rate=RATE)
    np.testing.assert_allclose(samples, np.array(values) / (1 << 23), rtol=0, atol=1e-7)


def test_32_bit_pcm_is_converted(tmp_path: Path) -> None:
    ints = np.array([-(1 << 31), 0, 1 << 30], dtype="<i4")
    samples = read_wav(write(tmp_path, wav_bytes(ints.tobytes(), bits=32)), sample_rate=RATE)
    np.testing.assert_array_equal(samples, [-1.0, 0.0, 0.5])


@pytest.mark.parametrize("dtype, bits", [("<f4", 32), ("<f8", 64)])
def test_float_wav_is_read(tmp_path: Path, dtype: str, bits: int) -> None:
    values = np.array([0.25, -0.5, 0.0, -1.0], dtype=dtype)
    path = write(tmp_path, wav_bytes(values.tobytes(), code=3, bits=bits))
    np.testing.assert_array_equal(read_wav(path, sample_rate=RATE), values.astype(np.float32))


def test_float_wav_out_of_range_is_clipped_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(np.array([1.5, -2.0, 0.5], dtype="<f4").tobytes(), code=3, bits=32))
    with pytest.warns(AudioConversionWarning, match="clipped"):
        samples = read_wav(path, sample_rate=RATE)
    assert samples[0] < 1.0 and samples[1] == -1.0 and samples[2] == 0.5


def test_float_wav_with_nan_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(np.array([0.0, np.nan], dtype="<f4").tobytes(), code=3, bits=32))
    with pytest.raises(AudioError, match="NaN"):
        read_wav(path, sample_rate=RATE)


def test_stereo_is_mixed_down_with_a_warning(tmp_path: Path) -> None:
    frames = np.array([[1000, 3000], [-2000, 0], [5, 7]], dtype="<i2")
    path = write(tmp_path, wav_bytes(frames.tobytes(), channels=2))
    with pytest.warns(AudioConversionWarning, match="mixed 2 channels"):
        samples = read_wav(path, sample_rate=RATE)
    np.testing.assert_allclose(samples, frames.mean(axis=1) / 32768, rtol=1e-6)


def test_other_rate_is_resampled_with_a_warning(tmp_path: Path) -> None:
    rate = RATE // 2
    t = np.arange(rate) / rate
    ints = np.round(8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    path = write(tmp_path, wav_bytes(ints.tobytes(), rate=rate))
    with pytest.warns(AudioConversionWarning, match=f"resampled from {rate} Hz to {RATE} Hz") as caught:
        samples = read_wav(path, sample_rate=RATE)
    assert str(path) in str(caught[0].message) and "ffmpeg" in str(caught[0].message)
    assert len(samples) == 2 * len(ints)
    expected = 8000 / 32768 * np.sin(2 * np.pi * 440 * np.arange(len(samples)) / RATE)
    assert np.max(np.abs(samples - expected)[200:-200]) < 1e-3


def test_resample_keeps_the_passband() -> None:
    for source in (8000, 22050, 44100, 48000):
        t = np.arange(source) / source
        out = resample(np.sin(2 * np.pi * 1000 * t), source, RATE)
        assert len(out) == RATE
        expected = np.sin(2 * np.pi * 1000 * np.arange(len(out)) / RATE)
        assert np.max(np.abs(out - expected)[300:-300]) < 1e-3, source


def test_resample_rejects_what_would_alias() -> None:
    source = 44100
    t = np.arange(source) / source
    for tone in (8500.0, 10000.0, 15000.0):  # above the 8 kHz Nyquist of 16 kHz
        out = resample(np.sin(2 * np.pi * tone * t), source, RATE)
        assert np.sqrt(np.mean(out[300:-300] ** 2)) < 1e-3, tone


def test_resample_to_the_same_rate_is_identity() -> None:
    x = np.random.RandomState(0).uniform(-1, 1, 100)
    np.testing.assert_array_equal(resample(x, RATE, RATE), x)


# -- refused input --------------------------------------------------------------


def assert_refused(path: Path, match: str, **kwargs: float) -> AudioError:
    with pytest.raises(AudioError, match=match) as caught:
        read_wav(path, sample_rate=RATE, **kwargs)
    assert str(path) in str(caught.value)
    return caught.value


def test_not_a_wav(tmp_path: Path) -> None:
    error = assert_refused(write(tmp_path, b"ID3\x03\x00\x00\x00 mp3 frames...", "song.mp3"), "not a WAV")
    assert "ffmpeg" in str(error)


def test_empty_file(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, b""), "is empty")


def test_wav_without_samples(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, wav_bytes(b"")), "no samples")


def test_truncated_data(tmp_path: Path) -> None:
    content = wav_bytes(np.zeros(1000, dtype="<i2").tobytes())
    assert_refused(write(tmp_path, content[:-501]), "truncated")


def test_streaming_placeholder_size_reads_to_the_end_of_the_file(tmp_path: Path) -> None:
    ints = np.arange(-500, 500, dtype="<i2")
    content = wav_bytes(ints.tobytes(), data_size=0xFFFFFFFF) + b"\x07"  # an odd trailing byte: not a whole frame
    samples = read_wav(write(tmp_path, content), sample_rate=RATE)
    np.testing.assert_array_equal(samples, ints.astype(np.float32) / 32768)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    with fifo(tmp_path / "pipe.wav") as path:
        assert_refused(path, "is a FIFO \\(named pipe\\), not a regular file")


def test_rates_without_a_common_divisor_use_a_bounded_kernel_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """383999 -> 16000 Hz has 16000 distinct phases: output times are rounded to a grid of at most
    cutoff * RESAMPLE_PHASE_SCALE kernels instead (the time it took: docs/faults.md)."""
    from ds2ir.model import audio

    rows = []
    kernels = audio._kernels
    monkeypatch.setattr(audio, "_kernels", lambda fractions, *args: rows.append(len(fractions)) or kernels(fractions, *args))
    source = 383999
    t = np.arange(source // 5) / source
    out = resample(np.sin(2 * np.pi * 1000 * t) + 0.5 * np.sin(2 * np.pi * 6500 * t), source, RATE)
    assert sum(rows) <= 0.9 * RATE / source * audio.RESAMPLE_PHASE_SCALE + 1
    n = np.arange(len(out)) / RATE
    expected = np.sin(2 * np.pi * 1000 * n) + 0.5 * np.sin(2 * np.pi * 6500 * n)
    assert len(out) == -(-len(t) * RATE // source) and np.max(np.abs(out - expected)[300:-300]) < 1e-3


def test_header_cut_short(tmp_path: Path) -> None:
    content = wav_bytes(b"\x00\x00" * 10)
    assert_refused(write(tmp_path, content[:20], "a.wav"), "truncated")
    assert_refused(write(tmp_path, content[:36], "b.wav"), "no 'data' chunk")
    assert_refused(write(tmp_path, content[:12], "c.wav"), "no 'fmt' chunk")


@pytest.mark.parametrize("code, name", [(6, "A-law"), (7, "mu-law"), (0x55, "MP3"), (0x1234, "0x1234")])
def test_compressed_formats(tmp_path: Path, code: int, name: str) -> None:
    assert_refused(write(tmp_path, wav_bytes(b"\x00" * 10, code=code, bits=8)), name)


def test_odd_sample_width(tmp_path: Path) -> None:
    assert_refused(write(tmp_path, wav_bytes(b"\x00" * 10, bits=40)), "unsupported PCM")


@pytest.mark.parametrize("rate", [0, 100, 2_000_000_000])
def test_implausible_sample_rate(tmp_path: Path, rate: int) -> None:
    assert_refused(write(tmp_path, wav_bytes(b"\x00\x00" * 10, rate=rate)), f"sample rate {rate} Hz")


def test_damaged_headers_give_audio_errors_only(tmp_path: Path) -> None:
    """Random corruption of the header: a clean result or an AudioError, never numpy's or struct's."""
    rng = np.random.RandomState(0)
    original = wav_bytes(np.arange(-300, 300, dtype="<i2").tobytes())
    path = tmp_path / "damaged.wav"
    for _ in range(300):
        content = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            position = rng.randint(0, 60)
            if rng.randint(2):
                content[position] = rng.randint(256)
            else:
                content[position:position + 4] = struct.pack("<I", rng.choice([0, 1, 3, 0xFFFFFFFF, rng.randint(1 << 32)]))
        path.write_bytes(bytes(content[:rng.randint(len(content) // 2, len(content) + 1)]))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AudioConversionWarning)
                samples = read_wav(path, sample_rate=RATE, max_seconds=60)
        except AudioError:
            continue
        assert samples.dtype == np.float32 and samples.ndim == 1 and np.all(np.isfinite(samples))


def test_too_long(tmp_path: Path) -> None:
    path = write(tmp_path, wav_bytes(np.zeros(RATE * 3, dtype="<i2").tobytes()))
    assert_refused(path, "limit", max_seconds=2.0)


def test_over_an_hour_is_refused_before_reading(tmp_path: Path) -> None:
    size = 2 * RATE * 3601
    path = write(tmp_path, wav_bytes(b"", data_size=size))
    with path.open("r+b") as stream:  # sparse: no disk space, no time
        stream.truncate(path.stat().st_size + size)
    assert_refused(path, "3601 s, more than the 3600 s limit")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="does not exist"):
        read_wav(tmp_path / "absent.wav", sample_rate=RATE)


def test_directory(tmp_path: Path) -> None:
    assert_refused(tmp_path, "directory")


# -- the shared recordings --------------------------------------------------------


def test_shared_16k_recording() -> None:
    samples = read_wav(DATA / "LDC93S1.wav", sample_rate=RATE)
    transcript_samples = int((DATA / "LDC93S1.txt").read_text().split()[1])
    assert len(samples) == transcript_samples
    assert -1.0 <= samples.min() and samples.max() < 1.0


@pytest.mark.parametrize("name, conversion", [
    ("LDC93S1_pcms16le_1_8000.wav", "resampled from 8000 Hz"),
    ("LDC93S1_pcms16le_2_44100.wav", "mixed 2 channels down to mono and resampled from 44100 Hz"),
])
def test_shared_converted_recordings_match_the_16k_one(name: str, conversion: str) -> None:
    reference = read_wav(DATA / "LDC93S1.wav", sample_rate=RATE)
    with pytest.warns(AudioConversionWarning, match=conversion):
        samples = read_wav(DATA / name, sample_rate=RATE)
    assert abs(len(samples) - len(reference)) <= 1
    n = min(len(samples), len(reference))
    assert np.corrcoef(samples[:n], reference[:n])[0, 1] > 0.98
