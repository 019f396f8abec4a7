"""The recordings the host prepared for `invoke verify` (verify/inputs/*.npz), as both images' stage commands
read them, and the zero LSTM state each recording starts from."""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

import numpy as np

from ds2ir.model.architecture import Architecture
from ds2ir.model.layout import ArtifactLayout


def recorded_inputs(layout: ArtifactLayout) -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
    """(name, arrays) for each recording the host prepared under verify/inputs."""
    for path in sorted((layout.verify_dir / "inputs").glob("*.npz")):
        with np.load(str(path)) as data:
            yield path.stem, {key: data[key] for key in data.files}


def zero_state(arch: Architecture) -> Tuple[np.ndarray, np.ndarray]:
    """The LSTM's initial (c, h): an utterance starts from zeros, as in DeepSpeech's client."""
    return np.zeros(arch.state_shape, np.float32), np.zeros(arch.state_shape, np.float32)
