"""Reading WAV files into the float samples DeepSpeech's feature ops expect.

DeepSpeech 0.8.2 was trained on 16-bit mono 16 kHz PCM, scaled as ``int16 / 32768``;
that case is read bit-exactly. Other PCM widths (8, 24, 32 bit) and IEEE float WAVs
are converted exactly; other rates are resampled and extra channels mixed down, both
with an :class:`AudioConversionWarning` since they change the signal. Anything that
cannot become samples raises :class:`~ds2ir.errors.AudioError` naming the file and
the fix, before numpy ever sees a malformed buffer.

The RIFF container is parsed here rather than with :mod:`wave`, which rejects float
files (and, before Python 3.12, WAVE_FORMAT_EXTENSIBLE ones) and whose errors would
not name the file or the fix.
"""
from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, NamedTuple, Optional, Tuple, Union

import numpy as np

from ds2ir.errors import AudioError, MissingInputError
from ds2ir.paths import regular_file

__all__ = ["AudioConversionWarning", "MAX_SECONDS", "read_wav", "resample"]

# Longer recordings would need gigabytes of features; split them first.
MAX_SECONDS = 3600.0
# Rates outside this range are not speech recordings (or a damaged header).
MIN_SOURCE_RATE = 4000
MAX_SOURCE_RATE = 384000

_FORMAT_PCM = 0x0001
_FORMAT_FLOAT = 0x0003
_FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0055: "MP3"}
_NOT_A_SIZE = 0xFFFFFFFF  # placeholder size written by streaming encoders
_FMT_MAX_READ = 40  # the longest fmt chunk we use: WAVE_FORMAT_EXTENSIBLE

# Band-limited resampling: Kaiser-windowed sinc, cutoff at RESAMPLE_ROLLOFF of the
# lower Nyquist frequency, RESAMPLE_ZERO_CROSSINGS sinc lobes on each side; beta 7.86
# gives ~80 dB stopband rejection, and the transition band ends below Nyquist.
RESAMPLE_ROLLOFF = 0.9
RESAMPLE_ZERO_CROSSINGS = 32
RESAMPLE_KAISER_BETA = 7.86
# Rates without a small common divisor (383999 -> 16000 Hz) have as many kernel phases as output
# samples. Beyond cutoff * RESAMPLE_PHASE_SCALE phases, output times are rounded to that grid instead:
# the time error (half a grid step) costs at most pi / (2 * RESAMPLE_PHASE_SCALE) of a passband tone's
# amplitude (-80 dB, as the stopband), and the kernel table stays near 10**6 values whatever the rates.
RESAMPLE_PHASE_SCALE = 16384
# Outputs computed per step of the rounded-phase path: bounds its temporary arrays (~32 MB).
_RESAMPLE_CHUNK_VALUES = 1 << 22

StrPath = Union[str, Path]


class AudioConversionWarning(UserWarning):
    """The audio was resampled or mixed down, so it is not what the model was trained on."""


class _Format(NamedTuple):
    code: int
    channels: int
    sample_rate: int
    block_align: int
    bits: int


def _fix_hint(sample_rate: int) -> str:
    return f"Convert it with: ffmpeg -i INPUT -ac 1 -ar {sample_rate} -c:a pcm_s16le OUTPUT.wav"


def read_wav(path: StrPath, *, sample_rate: int, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Mono float32 samples in [-1, 1) at ``sample_rate`` (Architecture.sample_rate).

    Raises MissingInputError if the file does not exist and AudioError if it is not
    a usable WAV; warns with AudioConversionWarning when resampling or mixing down.
    """
    path = Path(path)
    hint = _fix_hint(sample_rate)
    try:
        regular_file(path, "audio file", error=AudioError)  # opening a FIFO would wait for a writer forever
        with path.open("rb") as stream:
            fmt, data_size = _read_header(stream, path, hint)
            _check_format(fmt, path, hint)
            n_frames = data_size // fmt.block_align
            if n_frames == 0:
                raise AudioError(f"{path}: the WAV file has no samples (empty data chunk). Record or export it again.")
            seconds = n_frames / fmt.sample_rate
            if seconds > max_seconds:
                raise AudioError(
                    f"{path}: the recording lasts {seconds:.0f} s, more than the {max_seconds:.0f} s limit. "
                    f"Split it into shorter files (e.g. ffmpeg -i INPUT -f segment -segment_time 600 OUT%03d.wav)."
                )
            raw = stream.read(n_frames * fmt.block_align)
    except FileNotFoundError as exc:
        raise MissingInputError(f"{path}: the audio file does not exist.") from exc
    except IsADirectoryError as exc:
        raise AudioError(f"{path}: is a directory, not a WAV file.") from exc
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc

    samples = _decode(raw, fmt, path, hint)
    conversions = []
    if fmt.channels > 1:
        samples = samples.mean(axis=1)
        conversions.append(f"mixed {fmt.channels} channels down to mono")
    else:
        samples = samples[:, 0]
    if fmt.sample_rate != sample_rate:
        samples = resample(samples, fmt.sample_rate, sample_rate)
        conversions.append(f"resampled from {fmt.sample_rate} Hz to {sample_rate} Hz")
    if conversions:
        warnings.warn(
            f"{path}: {' and '.join(conversions)}; the model expects 16-bit mono {sample_rate} Hz, "
            f"so accuracy may suffer. {hint}",
            AudioConversionWarning,
            stacklevel=2,
        )
    return _clip(samples, path)


def _read_header(stream: BinaryIO, path: Path, hint: str) -> Tuple[_Format, int]:
    """The fmt chunk and the data chunk's size; leaves ``stream`` at the first sample."""
    head = stream.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        what = "is empty" if not head else "is not a WAV (RIFF/WAVE) file"
        if head[:4] == b"RF64":
            what = "is an RF64 WAV (over 4 GB), which is not supported"
        raise AudioError(f"{path}: the file {what}. {hint}")
    fmt: Optional[_Format] = None
    while True:
        chunk = stream.read(8)
        if len(chunk) < 8:
            missing = "fmt" if fmt is None else "data"
            raise AudioError(
                f"{path}: the WAV file has no '{missing}' chunk; it is truncated or damaged. {hint}"
            )
        chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if chunk_id == b"fmt ":
            body = stream.read(min(size, _FMT_MAX_READ))  # a damaged size must not allocate gigabytes
            fmt = _parse_fmt(body, path, hint)
            stream.seek(size - len(body) + (size & 1), 1)
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioError(f"{path}: the WAV file's 'data' chunk comes before its 'fmt' chunk. {hint}")
            start = stream.tell()
            available = stream.seek(0, 2) - start
            stream.seek(start)
            if size == _NOT_A_SIZE:  # a streaming encoder could not go back to write the size: read to the end
                return fmt, available
            if size > available:
                raise AudioError(
                    f"{path}: the WAV file is truncated: its data chunk declares {size} bytes but only "
                    f"{available} bytes follow. Record or export it again. {hint}"
                )
            return fmt, size
        else:
            stream.seek(size + (size & 1), 1)


def _parse_fmt(body: bytes, path: Path, hint: str) -> _Format:
    if len(body) < 16:
        raise AudioError(f"{path}: the WAV file's 'fmt' chunk is truncated. {hint}")
    code, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if code == _FORMAT_EXTENSIBLE:
        if len(body) < 26:
            raise AudioError(f"{path}: the WAV file's extensible 'fmt' chunk is truncated. {hint}")
        code = struct.unpack("<H", body[24:26])[0]  # first two bytes of the SubFormat GUID
    return _Format(code, channels, rate, block_align, bits)


def _check_format(fmt: _Format, path: Path, hint: str) -> None:
    if fmt.code not in (_FORMAT_PCM, _FORMAT_FLOAT):
        name = _FORMAT_NAMES.get(fmt.code, f"format code 0x{fmt.code:04x}")
        raise AudioError(
            f"{path}: the WAV file holds {name} audio; only PCM and float WAVs are supported. {hint}"
        )
    if fmt.channels < 1:
        raise AudioError(f"{path}: the WAV header is damaged (0 channels). {hint}")
    if not MIN_SOURCE_RATE <= fmt.sample_rate <= MAX_SOURCE_RATE:
        raise AudioError(
            f"{path}: the sample rate {fmt.sample_rate} Hz is outside the supported "
            f"{MIN_SOURCE_RATE}-{MAX_SOURCE_RATE} Hz. {hint}"
        )
    width = fmt.block_align // fmt.channels
    widths = (1, 2, 3, 4) if fmt.code == _FORMAT_PCM else (4, 8)
    if width not in widths or fmt.block_align != width * fmt.channels:
        kind = "PCM" if fmt.code == _FORMAT_PCM else "float"
        raise AudioError(
            f"{path}: unsupported {kind} sample layout ({fmt.bits} bits, {fmt.block_align} bytes per frame "
            f"for {fmt.channels} channels). {hint}"
        )


def _decode(raw: bytes, fmt: _Format, path: Path, hint: str) -> np.ndarray:
    """Samples as float64 [frames, channels], scaled as TF's DecodeWav scales int16."""
    width = fmt.block_align // fmt.channels
    if fmt.code == _FORMAT_FLOAT:
        values = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
        if not np.all(np.isfinite(values)):
            raise AudioError(f"{path}: the float WAV contains NaN or infinite samples. {hint}")
    elif width == 1:
        values = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 3:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)
        values = ints.astype(np.float64) / float(1 << 23)
    else:
        dtype = "<i2" if width == 2 else "<i4"
        values = np.frombuffer(raw, dtype=dtype).astype(np.float64) / float(1 << (8 * width - 1))
    return values.reshape(-1, fmt.channels)


def _clip(samples: np.ndarray, path: Path) -> np.ndarray:
    """float32 in [-1, 1); float WAVs and resampling overshoot can leave that range."""
    top = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
    if samples.size and (samples.max() > top or samples.min() < -1.0):
        warnings.warn(
            f"{path}: samples outside [-1, 1) were clipped; lower the recording's level to avoid distortion.",
            AudioConversionWarning,
            stacklevel=3,
        )
    return np.clip(samples, -1.0, top).astype(np.float32)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (Kaiser-windowed sinc), float64 out.

    Output sample n sits at input time n * source_rate / target_rate; its value is the
    input convolved with a low-pass sinc cut below the lower of the two Nyquist rates.
    """
    x = np.asarray(samples, dtype=np.float64)
    gcd = math.gcd(source_rate, target_rate)
    up, down = target_rate // gcd, source_rate // gcd
    if up == down:
        return x.copy()
    n_out = -(-len(x) * up // down)
    cutoff = RESAMPLE_ROLLOFF * min(1.0, up / down)  # relative to the input's Nyquist
    half = int(math.ceil(RESAMPLE_ZERO_CROSSINGS / cutoff))
    taps = np.arange(-half + 1, half + 1)
    padded = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
    phases = int(math.ceil(cutoff * RESAMPLE_PHASE_SCALE))
    if up > phases:
        return _resample_rounded(padded, n_out, up, down, phases, _kernels(np.arange(phases) / phases, taps, half, cutoff))
    out = np.empty(n_out)
    item = padded.strides[0]
    # Outputs first, first + up, ... share the fractional input position (first * down % up) / up.
    for first in range(min(up, n_out)):
        kernel = _kernels(np.array([(first * down % up) / up]), taps, half, cutoff)[0]
        count = len(range(first, n_out, up))
        start = first * down // up + 1  # padded index of the first tap, input k0 + taps[0]
        rows = np.lib.stride_tricks.as_strided(
            padded[start:], shape=(count, len(taps)), strides=(down * item, item), writeable=False
        )
        out[first::up] = rows @ kernel
    return out


def _kernels(fractions: np.ndarray, taps: np.ndarray, half: int, cutoff: float) -> np.ndarray:
    """One Kaiser-windowed sinc kernel per fractional output position (rows), unit gain at DC each."""
    offsets = fractions[:, None] - taps[None, :]  # distance of each tap from the output's time
    window = np.i0(RESAMPLE_KAISER_BETA * np.sqrt(np.clip(1.0 - (offsets / half) ** 2, 0.0, None)))
    kernels = np.sinc(cutoff * offsets) * window
    return kernels / kernels.sum(axis=1, keepdims=True)


def _resample_rounded(padded: np.ndarray, n_out: int, up: int, down: int, phases: int, kernels: np.ndarray) -> np.ndarray:
    """Output n at input time n * down / up rounded to 1/phases of a sample, in chunks of bounded size."""
    out = np.empty(n_out)
    width = kernels.shape[1]
    step = max(1, _RESAMPLE_CHUNK_VALUES // width)
    item = padded.strides[0]
    windows = np.lib.stride_tricks.as_strided(padded, shape=(len(padded) - width + 1, width), strides=(item, item),
                                              writeable=False)  # row k: the taps of an output whose first tap is k
    for begin in range(0, n_out, step):
        position = np.arange(begin, min(begin + step, n_out), dtype=np.int64) * down  # in 1/up input samples
        phase = (position % up * phases + up // 2) // up
        first = position // up + 1 + phase // phases  # padded index of the first tap (a rounded-up phase carries)
        phase %= phases
        out[begin:begin + len(position)] = np.einsum("ij,ij->i", windows[first], kernels[phase])
    return out


def write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write float samples in [-1, 1) as 16-bit PCM mono, atomically."""
    import wave

    from ds2ir.atomic import atomic_path

    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768), -32768, 32767).astype("<i2")
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(sample_rate)
            out.writeframes(pcm.tobytes())


def synthetic_speech(sample_rate: int, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A speech-like stand-in when no recording is at hand: gliding harmonics in noise, with pauses."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    pitch = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 1.5 * t), 0, None)
    return (0.25 * envelope * voiced + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
