"""DeepSpeech's network as ds2ir builds it: graph node names, shapes and feature settings, the alphabet,
and the variables a checkpoint must hold."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple, Tuple

from ds2ir.errors import ConfigError

# Names of the nodes of DeepSpeech's streaming inference graph (train.py, export()).
INPUT_NODE = "input_node"
INPUT_LENGTHS = "input_lengths"
PREVIOUS_STATE_C = "previous_state_c"
PREVIOUS_STATE_H = "previous_state_h"
LOGITS = "logits"
NEW_STATE_C = "new_state_c"
NEW_STATE_H = "new_state_h"
INPUT_SAMPLES = "input_samples"
MFCCS = "mfccs"
LSTM_SCOPE = "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell"
# LSTMBlockFusedCell gathers the final cell state first (GatherNd), then the output (GatherNd_1).
LSTM_FINAL_C = LSTM_SCOPE + "/GatherNd"
LSTM_FINAL_H = LSTM_SCOPE + "/GatherNd_1"
# Mel filterbank channels of TF's Mfcc op (DeepSpeech keeps the default); n_input MFCCs come from them.
MEL_CHANNELS = 40


@dataclass(frozen=True)
class Architecture:
    """DeepSpeech's shapes and feature settings (flags.py defaults unless overridden)."""

    n_hidden: int = 2048
    n_steps: int = 16
    n_input: int = 26
    n_context: int = 9
    relu_clip: float = 20.0
    sample_rate: int = 16000
    feature_win_len_ms: int = 32
    feature_win_step_ms: int = 20
    beam_width: int = 500
    graph_version: int = 6

    @property
    def window_width(self) -> int:
        """Frames per feature window: the frame and n_context on each side."""
        return 2 * self.n_context + 1

    @property
    def input_shape(self) -> Tuple[int, int, int, int]:
        return (1, self.n_steps, self.window_width, self.n_input)

    @property
    def state_shape(self) -> Tuple[int, int]:
        return (1, self.n_hidden)

    @property
    def audio_window_samples(self) -> int:
        return self.sample_rate * self.feature_win_len_ms // 1000

    @property
    def audio_step_samples(self) -> int:
        return self.sample_rate * self.feature_win_step_ms // 1000



@dataclass(frozen=True)
class Alphabet:
    """DeepSpeech's alphabet: one label per line, '#' comments, '\\#' for a literal '#'."""

    labels: Tuple[str, ...]

    @classmethod
    def parse(cls, text: str, *, source: str = "alphabet") -> "Alphabet":
        labels = []
        for line in text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"):
            if line.startswith("\\#"):
                labels.append("#")
            elif line.startswith("#"):
                continue
            else:
                labels.append(line)
        if not labels:
            raise ConfigError("the alphabet has no labels", file=source)
        if len(set(labels)) != len(labels):
            raise ConfigError("the alphabet repeats a label", file=source)
        return cls(tuple(labels))

    @classmethod
    def load(cls, path: Path) -> "Alphabet":
        return cls.parse(path.read_text(encoding="utf-8"), source=str(path))

    @classmethod
    def default(cls) -> "Alphabet":
        """The English alphabet DeepSpeech 0.8.2 ships (28 labels)."""
        return cls.load(Path(__file__).parents[1] / "data" / "alphabet.txt")

    def to_text(self) -> str:
        """The alphabet.txt form that :meth:`parse` reads back."""
        return "".join(("\\#" if label == "#" else label) + "\n" for label in self.labels)

    @property
    def n_classes(self) -> int:
        """Labels plus the CTC blank."""
        return len(self.labels) + 1

    def serialize(self) -> bytes:
        """The byte format of DeepSpeech's ``metadata_alphabet``: little-endian uint16 count,
        then per label uint16 index, uint16 byte length, UTF-8 bytes."""
        out = bytearray(len(self.labels).to_bytes(2, "little"))
        for index, label in enumerate(self.labels):
            encoded = label.encode("utf-8")
            out += index.to_bytes(2, "little") + len(encoded).to_bytes(2, "little") + encoded
        return bytes(out)


class ModelVariable(NamedTuple):
    name: str
    shape: Tuple[int, ...]
    dtype: str


def model_variables(arch: Architecture, n_classes: int) -> List[ModelVariable]:
    """Every variable the exporter restores, with its shape: the checkpoint contract."""
    h = arch.n_hidden
    dense = [
        ("layer_1", arch.window_width * arch.n_input, h),
        ("layer_2", h, h),
        ("layer_3", h, h),
        ("layer_5", h, h),
        ("layer_6", h, n_classes),
    ]
    out = []
    for layer, fan_in, units in dense:
        out.append(ModelVariable(f"{layer}/bias", (units,), "float32"))
        out.append(ModelVariable(f"{layer}/weights", (fan_in, units), "float32"))
    out.append(ModelVariable(f"{LSTM_SCOPE}/bias", (4 * h,), "float32"))
    out.append(ModelVariable(f"{LSTM_SCOPE}/kernel", (2 * h, 4 * h), "float32"))
    return sorted(out)
