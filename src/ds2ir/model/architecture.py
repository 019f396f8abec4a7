"""DeepSpeech's network as ds2ir builds it: graph node names, shapes and feature settings, the alphabet,
and the variables a checkpoint must hold."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

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
#: the Reshape of the last layer to [steps, batch, classes], which the softmax ``logits`` reads
RAW_LOGITS = "raw_logits"
#: ``metadata_language`` as DeepSpeech 0.8.2's and 0.9.3's exporters write it when --export_language is not
#: given: that flag's default, its help text in angle brackets (util/flags.py, str_val_equals_help)
EXPORT_LANGUAGE = (
    '<language the model was trained on - IETF BCP 47 language tag including at least language, script and region '
    'subtags. E.g. "en-Latn-UK" or "de-Latn-DE" or "cmn-Hans-CN". Include as much info as you can without loss of '
    'precision. For example, if a model is trained on Scottish English, include the variant subtag: '
    '"en-Latn-GB-Scotland".>'
)
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
        """Labels as ds_ctcdecoder's ``Alphabet::init`` reads them (native_client/alphabet.cc): a line
        that is exactly ``\\#`` is ``#``, other lines starting with ``#`` and empty lines are skipped."""
        labels = []
        for line in re.split(r"\r\n|\r|\n", text):
            if line == "\\#":
                labels.append("#")
            elif line and not line.startswith("#"):
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
        """DeepSpeech's ``metadata_alphabet``, byte for byte: little-endian uint16 count, then per
        label uint16 index, uint16 byte length, UTF-8 bytes, in the order ds_ctcdecoder writes them.

        DeepSpeech's exporter takes these bytes from ds_ctcdecoder's ``Alphabet::Serialize``,
        which walks an ``std::unordered_map`` from index to label: the labels come out in that
        map's iteration order (:func:`_unordered_map_order`), not by index. Readers (the
        native client, ds_ctcdecoder's ``Deserialize``) key each label by its index, so the
        order only matters for the graph's bytes.
        """
        out = bytearray(len(self.labels).to_bytes(2, "little"))
        for index in _unordered_map_order(len(self.labels)):
            encoded = self.labels[index].encode("utf-8")
            out += index.to_bytes(2, "little") + len(encoded).to_bytes(2, "little") + encoded
        return bytes(out)


#: the bucket counts libstdc++'s std::unordered_map goes through while keys are inserted one at a time:
#: 13 at the first insertion (room for 11), then, each time the elements would outnumber the buckets
#: (max load factor 1), the first entry of its prime table (_Prime_rehash_policy) at least twice as large;
#: the last one holds more keys than a uint16 count allows
_LIBSTDCXX_BUCKET_COUNTS = (13, 29, 59, 127, 257, 541, 1109, 2357, 5087, 10273, 20753, 42043, 85229)


def _unordered_map_order(count: int) -> List[int]:
    """The order libstdc++ iterates an ``std::unordered_map<unsigned int, ...>`` filled with 0..count-1 in order.

    tests/e2e/test_upstream_graph.py compares it with ds_ctcdecoder 0.9.3 (0.8.2 gives the same orders).
    """
    table = _UnorderedMap()
    for key in range(count):
        table.insert(key)
    return list(table.keys())


class _UnorderedMap:
    """The keys of libstdc++'s hash table (GCC 7 and later), in the order its iterator visits them.

    The table is one singly linked list, each bucket's nodes adjacent in it, and per
    bucket the node before its first one; a key's bucket is the key modulo the bucket
    count (std::hash of an integer is the integer). A new node goes first among its
    bucket's nodes, or first in the list when its bucket is empty. Growing the table
    walks the old list and places every node the same way.
    """

    _HEAD = -1

    def __init__(self) -> None:
        self._buckets = 0
        self._next: Dict[int, Optional[int]] = {self._HEAD: None}
        self._before: Dict[int, int] = {}  # bucket -> the node before its first node

    def insert(self, key: int) -> None:
        if len(self._next) > self._buckets:  # the elements, this one included, would outnumber the buckets
            self._rehash(next(size for size in _LIBSTDCXX_BUCKET_COUNTS if size > self._buckets))
        self._place(key)

    def keys(self) -> Iterator[int]:
        node = self._next[self._HEAD]
        while node is not None:
            yield node
            node = self._next[node]

    def _rehash(self, buckets: int) -> None:
        keys = list(self.keys())
        self._buckets, self._next, self._before = buckets, {self._HEAD: None}, {}
        for key in keys:
            self._place(key)

    def _place(self, key: int) -> None:
        bucket = key % self._buckets
        before = self._before.get(bucket)
        if before is None:
            first = self._next[self._HEAD]
            self._next[key], self._next[self._HEAD] = first, key
            if first is not None:
                self._before[first % self._buckets] = key
            self._before[bucket] = self._HEAD
        else:
            self._next[key], self._next[before] = self._next[before], key


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
