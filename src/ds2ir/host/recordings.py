"""The recordings verify and bench feed both runtimes, prepared on the host as the network's windows (numpy)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

from ds2ir import atomic
from ds2ir.errors import MissingInputError
from ds2ir.model.architecture import Architecture
from ds2ir.model.layout import ArtifactLayout


def default_recordings(recordings: Path, layout: ArtifactLayout, arch: Architecture) -> List[Path]:
    """The WAVs in ``recordings`` (the checkout's data/: LDC93S1 at three rates), else a test signal made here."""
    from ds2ir.model.audio import synthetic_speech, write_wav

    shipped = sorted(recordings.glob("*.wav"))
    if shipped:
        return shipped
    signal = layout.verify_dir / "test-signal.wav"
    write_wav(signal, synthetic_speech(arch.sample_rate), arch.sample_rate)
    return [signal]


def prepare_recordings(recordings: Sequence[Path], directory: Path, arch: Architecture) -> None:
    """Features of each recording as the network's windows (numpy, on the host), for both runtimes."""
    import numpy as np

    from ds2ir.model.audio import read_wav
    from ds2ir.model.features import windows_for_samples

    if not recordings:
        raise MissingInputError("No recordings to verify with: pass --audio FILE.wav.")
    with atomic.atomic_dir(directory) as tmp:
        for index, path in enumerate(recordings):
            samples = read_wav(path, sample_rate=arch.sample_rate)
            _, windows = windows_for_samples(samples, arch, source=path)
            name = f"{index:02d}-{path.stem}"
            with open(tmp / f"{name}.npz", "wb") as handle:
                np.savez(handle, samples=samples, windows=windows.windows, valid_steps=np.int64(windows.valid_steps),
                         source=np.array(str(path)))
