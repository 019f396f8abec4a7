"""Targets, architecture and artifact paths: the one typed source of truth.

``targets.toml`` at the project root is read and validated here; every other module
takes a :class:`Target` (or its parts) and never reads constants of its own. Errors
point at the file and the key.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ds2ir.errors import ConfigError
from ds2ir.paths import check_image_name, check_name, check_relative_path, check_text, path_under

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised in the py3.7 freeze image
    import tomli as tomllib

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

#: where the weights come from: the release's checkpoint, seeded random, trained here, a memory-mapped
#: model file (the release's .pbmm at model_url, or the user's own with `invoke build --model PATH.pbmm`),
#: or a checkpoint shipped in the checkout (checkpoint_path)
CHECKPOINT_KINDS = ("release", "synthetic", "trained", "pbmm", "checkout")
#: who writes output_graph.pb: ds2ir's own TF1 graph (graph.py), Coqui STT's training package,
#: or DeepSpeech's own DeepSpeech.py from the release's source archive (upstream.py)
EXPORTERS = ("builtin", "coqui-stt", "deepspeech")
#: how a convert image makes the IR: Model Optimizer's CLI, or OpenVINO's TF frontend (no TensorFlow),
#: or OpenVINO's public converters, the ovc command line and openvino.convert_model (2023.1+, no TensorFlow)
CONVERTERS = ("mo", "tf-frontend", "ovc", "convert-model")
IR_PRECISIONS = ("FP32", "FP16")
LSTM_VARIANTS = ("fused", "hoisted")
WEIGHT_COMPRESSIONS = ("none", "int8")
#: the keys that make a variant of a target: the same checkpoint and images, a different IR (docs/variants.md)
VARIANT_KEYS = ("ir_precision", "lstm", "weight_compression")
# A stage's container is stopped past this (targets.toml: stage_time_limit); the released 0.8.2
# checkpoint freezes and converts in minutes, training a small target in well under an hour.
DEFAULT_STAGE_TIME_LIMIT = 2 * 3600
INFERENCE_PRECISIONS = ("f32", "bf16")
#: what an image is for: the freeze or convert stage, or the application (`invoke transcribe`)
STAGES = ("freeze", "convert", "app")
TARGETS_ENV = "DS2IR_TARGETS"
PROJECT_ROOT_ENV = "DS2IR_PROJECT_ROOT"
# Where stage containers see the artifacts directory and the targets file.
CONTAINER_ARTIFACTS = Path("/artifacts")
CONTAINER_TARGETS = Path("/etc/ds2ir/targets.toml")
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

    def exporter_flags(self) -> List[str]:
        """The architecture as command-line flags of DeepSpeech's (and Coqui STT's) own exporter:
        the ones its util/flags.py defines (n_input and n_context are constants there)."""
        return [
            "--n_hidden", str(self.n_hidden),
            "--n_steps", str(self.n_steps),
            "--relu_clip", str(self.relu_clip),
            "--audio_sample_rate", str(self.sample_rate),
            "--feature_win_len", str(self.feature_win_len_ms),
            "--feature_win_step", str(self.feature_win_step_ms),
            "--export_beam_width", str(self.beam_width),
        ]


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
        return cls.load(Path(__file__).with_name("data") / "alphabet.txt")

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


DEFAULT_PLATFORM = "linux/amd64"
#: os/architecture[/variant], as Docker and Podman take --platform
PLATFORM_PATTERN = re.compile(r"linux/(amd64|arm64|arm|386|ppc64le|s390x|riscv64)(/v[5-8])?")


@dataclass(frozen=True)
class ImageSpec:
    """A stage image: Dockerfile, base image, its Python version and its hashed lock.

    ``lock`` is relative to the checkout (the build context); ``invoke lock`` compiles
    it from the ``.in`` file beside it for ``python``. ``converter`` (convert images)
    follows from what the lock installs: ``mo`` needs TensorFlow, ``tf-frontend`` does not.
    """

    name: str
    stage: str
    dockerfile: str
    base_image: str
    python: str
    lock: str
    converter: Optional[str] = None
    #: freeze images with DeepSpeech's training code: the release whose verified source archive
    #: the image installs, with these pip constraints (upstream.py); source_url is resolved from it
    source_release: Optional[str] = None
    constraints: Optional[str] = None
    source_url: Optional[str] = None
    #: what the image is built and run for: TensorFlow 1.15 exists only as x86-64 wheels, so an arm64
    #: engine runs these images under emulation rather than failing on a missing wheel
    platform: str = DEFAULT_PLATFORM

    def build_args(self, base_image: Optional[str] = None) -> Dict[str, str]:
        """The Dockerfile's ARGs (docker-compose.yml passes the same ones)."""
        args = {"BASE_IMAGE": base_image or self.base_image, "LOCK_FILE": self.lock}
        if self.constraints:
            args["CONSTRAINTS_FILE"] = self.constraints
        return args

    @property
    def lock_input(self) -> str:
        """The short, hand-written pins the lock is compiled from (``X.txt`` -> ``X.in``)."""
        return str(PurePosixPath(self.lock).with_suffix(".in"))


@dataclass(frozen=True)
class Release:
    """One DeepSpeech model release: where its assets are and its architecture defaults.

    ``checkpoint_url`` is None for a release that publishes no checkpoint (only synthetic
    or trained targets can use it); ``model_url`` is its memory-mapped model (``.pbmm``), ``scorer_url``
    its language model package (``invoke transcribe --scorer release``).
    """

    name: str
    graph_version: int
    source_url: str
    n_hidden: int
    checkpoint_url: Optional[str] = None
    model_url: Optional[str] = None
    scorer_url: Optional[str] = None


@dataclass(frozen=True)
class Training:
    """Overfit the architecture on one recording (checkpoint = "trained"); paths from the project root."""

    audio: str
    transcript: str
    epochs: int
    learning_rate: float


@dataclass(frozen=True)
class Target:
    """Everything one build needs: model, checkpoint source, images, IR precision."""

    name: str
    description: str
    release: Release
    checkpoint: str
    seed: int
    architecture: Architecture
    freeze_image: ImageSpec
    convert_image: ImageSpec
    ir_precision: str
    training: Optional[Training] = None
    #: checkpoint = "checkout": the checkpoint directory shipped in the checkout, from the project root
    checkpoint_path: Optional[str] = None
    exporter: str = "builtin"
    lstm: str = "fused"
    weight_compression: str = "none"
    alphabet: Alphabet = field(default_factory=Alphabet.default)
    #: the image `invoke transcribe` runs the IR in; None: the convert image (greedy decoding only)
    app_image: Optional[ImageSpec] = None
    #: seconds a stage's container may run before it is stopped and the build fails
    stage_time_limit: int = DEFAULT_STAGE_TIME_LIMIT

    @property
    def application_image(self) -> ImageSpec:
        """The image that runs the IR as an application: ``app_image``, else the convert image."""
        return self.app_image or self.convert_image

    @property
    def n_classes(self) -> int:
        return self.alphabet.n_classes

    def mo_arguments(self) -> List[str]:
        """Model Optimizer's shape and cut arguments, computed from the architecture.

        ``input_lengths`` is frozen to n_steps (the application always feeds full
        windows); the outputs are the LSTM's final h and c and the softmaxed logits.
        Every supported mo (2022.3 LTS and 2024.6) takes ``--compress_to_fp16=BOOL``;
        it is always given, since its default changed (False in 2022.3, True from 2023.0).
        """
        arch = self.architecture
        n, w, f, h = arch.n_steps, arch.window_width, arch.n_input, arch.n_hidden
        inputs = (
            f"{INPUT_LENGTHS}->[{n}],{INPUT_NODE}[1 {n} {w} {f}],"
            f"{PREVIOUS_STATE_H}[1 {h}],{PREVIOUS_STATE_C}[1 {h}]"
        )
        return [
            "--input", inputs,
            "--output", ",".join(self.ir_outputs()),
            f"--compress_to_fp16={self.ir_precision == 'FP16'}",
        ]

    def ir_inputs(self) -> Dict[str, Tuple[int, ...]]:
        """The IR's inputs and their static shapes (``input_lengths`` becomes a constant)."""
        arch = self.architecture
        return {INPUT_NODE: arch.input_shape, PREVIOUS_STATE_H: arch.state_shape, PREVIOUS_STATE_C: arch.state_shape}

    @staticmethod
    def ir_outputs() -> Tuple[str, ...]:
        """The graph nodes the IR ends at: the LSTM's final h and c, and the softmaxed logits."""
        return (LSTM_FINAL_H, LSTM_FINAL_C, LOGITS)

    def fingerprint(self) -> Dict[str, Any]:
        """A plain-data view of the target, for up-to-date checks and manifests."""
        data = asdict(self)
        data["alphabet"] = list(self.alphabet.labels)
        del data["app_image"]  # runs the finished IR; no build output depends on it
        del data["stage_time_limit"]  # nor on how long a stage may take
        return data

    @property
    def variant(self) -> str:
        """The IR variant in a word or two: fp32, fp16, int8, hoisted-fp32, hoisted-int8."""
        weights = "int8" if self.weight_compression == "int8" else self.ir_precision.lower()
        return f"hoisted-{weights}" if self.lstm == "hoisted" else weights


@dataclass(frozen=True)
class ArtifactLayout:
    """Where each stage writes, under an artifacts root (host or container)."""

    root: Path
    target: str

    @property
    def target_dir(self) -> Path:
        return path_under(self.root, check_name(self.target))

    @property
    def checkpoint_dir(self) -> Path:
        return self.target_dir / "checkpoint"

    @property
    def frozen_dir(self) -> Path:
        return self.target_dir / "frozen"

    @property
    def frozen_graph(self) -> Path:
        return self.frozen_dir / "output_graph.pb"

    @property
    def frozen_pbmm(self) -> Path:
        """The frozen graph memory-mapped, as DeepSpeech's native client loads its release model."""
        return self.frozen_dir / "output_graph.pbmm"

    @property
    def verification(self) -> Path:
        """How a release checkpoint without a published digest was verified (by agreement with the .pbmm)."""
        return self.target_dir / "verification.json"

    @property
    def model_file(self) -> Path:
        """The memory-mapped model a "pbmm" target is built from (fetched, or the user's --model)."""
        return self.target_dir / "model" / "model.pbmm"

    @property
    def ir_dir(self) -> Path:
        return self.target_dir / "ir"

    @property
    def ir_xml(self) -> Path:
        return self.ir_dir / "output_graph.xml"

    @property
    def ir_bin(self) -> Path:
        return self.ir_dir / "output_graph.bin"

    @property
    def check_dir(self) -> Path:
        """The IR-vs-TF check on a random window: inputs, TF outputs, report."""
        return self.target_dir / "check"

    @property
    def training_dir(self) -> Path:
        """Trained targets: the recording and transcript, copied in so the container sees them."""
        return self.target_dir / "training"

    @property
    def training_report(self) -> Path:
        return self.target_dir / "training.json"

    @property
    def verify_dir(self) -> Path:
        """`invoke verify`: prepared recordings, TF outputs, report.json, report.png."""
        return self.target_dir / "verify"

    @property
    def stamps_dir(self) -> Path:
        return self.target_dir / ".stamps"


# ---------------------------------------------------------------------------
# Loading and validation


def project_root() -> Path:
    """The checkout holding targets.toml: $DS2IR_PROJECT_ROOT, else the source tree."""
    env = os.environ.get(PROJECT_ROOT_ENV)
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[2]]
    for candidate in candidates:
        if (candidate / "targets.toml").is_file():
            return candidate
    raise ConfigError(
        f"cannot find the ds2ir checkout (looked for targets.toml in {candidates[0]}). "
        f"Run from a checkout installed with 'pip install -e .', or set {PROJECT_ROOT_ENV}."
    )


def recordings_dir() -> Path:
    """The checkout's ``data/``: the LDC93S1 recordings (16 kHz, 8 kHz, 44.1 kHz stereo) verify defaults to."""
    return project_root() / "data"


def targets_file() -> Path:
    """$DS2IR_TARGETS (set in the stage images), else the checkout's targets.toml."""
    env = os.environ.get(TARGETS_ENV)
    return Path(env) if env else project_root() / "targets.toml"


#: the inclusive range of each whole number in targets.toml: what the graph, the feature code
#: (whole samples per window) and the exporters accept, at sizes a build can hold in memory
INT_RANGES: Dict[str, Tuple[int, int]] = {
    "seed": (0, 2**31 - 1),  # numpy's RandomState and TensorFlow's op seeds
    "n_hidden": (1, 8192),
    "n_steps": (1, 1024),
    "n_input": (1, MEL_CHANNELS),
    "n_context": (0, 64),
    "sample_rate": (8000, 192000),
    "feature_win_len_ms": (1, 1000),
    "feature_win_step_ms": (1, 1000),
    "beam_width": (1, 100000),
    "graph_version": (1, 1000),
    "epochs": (1, 100000),
    "stage_time_limit": (1, 7 * 24 * 3600),  # seconds, up to a week
}
#: numbers that must be finite and in (0, upper]
FLOAT_UPPER: Dict[str, float] = {"relu_clip": 1e6, "learning_rate": 10.0}
_URL = re.compile(r"https?://[!-~]+")  # printable ASCII, no spaces
_IMAGE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}")

_TOP_KEYS = {"default_target", "images", "releases", "targets", "matrix"}
_IMAGE_KEYS = {f.name for f in fields(ImageSpec)} - {"name", "source_url"}
_RELEASE_KEYS = {f.name for f in fields(Release)} - {"name"}
_ARCH_KEYS = {f.name for f in fields(Architecture)} - {"graph_version"}
_TRAINING_KEYS = {"training_" + f.name if f.name in ("audio", "transcript") else f.name for f in fields(Training)}
_TARGET_KEYS = _TRAINING_KEYS | {"description", "extends", "release", "checkpoint", "checkpoint_path", "seed", "freeze_image",
                "convert_image", "ir_precision", "exporter", "lstm", "weight_compression", "app_image",
                "stage_time_limit"} | _ARCH_KEYS


class TargetsFile:
    """A parsed, validated targets.toml."""

    def __init__(self, data: Mapping[str, Any], *, source: str, project: Optional[Path] = None):
        """``project``: the checkout images are built from; when given, every lock file must exist there."""
        self.source = source
        self._data = data
        _check_keys(data, _TOP_KEYS, source, "")
        self.releases = {check_name(name, what="release name", file=source, key=f"releases.{name}"): self._release(name, raw)
                         for name, raw in self._table("releases").items()}
        self.images = {check_image_name(name, file=source, key=f"images.{name}"): self._image(name, raw, project)
                       for name, raw in self._table("images").items()}
        self._raw_targets = self._table("targets")
        for name in self._raw_targets:
            check_name(name, file=source, key=f"targets.{name}")
        self.default_target = self._get(data, "default_target", str, "")
        self.names = sorted(self._raw_targets)
        for name in self.names:  # validate all targets eagerly: a typo anywhere is an error
            self.target(name)
        if self.default_target not in self._raw_targets:
            raise ConfigError(f"default_target '{self.default_target}' is not a target", file=source, key="default_target")
        self.matrix = self._matrix(data.get("matrix", []))

    @classmethod
    def load(cls, path: Optional[Path] = None, *, project: Optional[Path] = None) -> "TargetsFile":
        path = path or targets_file()
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"the targets file {path} does not exist; set {TARGETS_ENV} or run from a checkout") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from None
        return cls(data, source=str(path), project=project)

    def variants_of(self, target: Target) -> List[Target]:
        """The other targets that differ from ``target`` only in VARIANT_KEYS: the same checkpoint,
        exporter and images giving another IR. The default variant (fp32) comes first."""

        def essence(candidate: Target) -> Dict[str, Any]:
            data = candidate.fingerprint()
            for key in ("name", "description") + VARIANT_KEYS:
                data.pop(key)
            data["application_image"] = candidate.application_image.name  # another app image: a swap, not a variant
            return data

        wanted = essence(target)
        found = [self.target(name) for name in self.names if name != target.name]
        variants = [candidate for candidate in found if essence(candidate) == wanted]
        return sorted(variants, key=lambda candidate: (candidate.variant != "fp32", candidate.variant))

    def target(self, name: Optional[str] = None) -> Target:
        name = name or self.default_target
        raw = self._resolve(name, ())
        key = f"targets.{name}"
        release_name = self._get(raw, "release", str, key)
        if release_name not in self.releases:
            raise ConfigError(f"release '{release_name}' is not defined under [releases]", file=self.source, key=f"{key}.release")
        release = self.releases[release_name]
        arch_values = {"n_hidden": release.n_hidden, "graph_version": release.graph_version}
        for arch_field in fields(Architecture):
            if arch_field.name in raw:
                arch_values[arch_field.name] = self._get(raw, arch_field.name, type(arch_field.default), key)
        architecture = Architecture(**arch_values)
        if architecture.feature_win_step_ms > architecture.feature_win_len_ms:
            raise ConfigError(f"feature_win_step_ms ({architecture.feature_win_step_ms}) is longer than feature_win_len_ms "
                              f"({architecture.feature_win_len_ms}), so samples between windows would be skipped",
                              file=self.source, key=f"{key}.feature_win_step_ms")
        checkpoint = self._choice(raw, "checkpoint", CHECKPOINT_KINDS, key)
        if checkpoint == "release" and release.checkpoint_url is None:
            raise ConfigError(f"release '{release_name}' has no checkpoint_url, so the checkpoint cannot be 'release'; "
                              f"use 'synthetic' or 'trained'", file=self.source, key=f"{key}.checkpoint")
        freeze_image = self._image_ref(raw, "freeze_image", "freeze", key)
        exporter = self._choice(raw, "exporter", EXPORTERS, key) if "exporter" in raw else EXPORTERS[0]
        if exporter == "deepspeech":
            self._check_upstream(freeze_image, architecture, key)
        target = Target(
            name=name,
            description=self._get(raw, "description", str, key) if "description" in raw else "",
            release=release,
            checkpoint=checkpoint,
            seed=self._get(raw, "seed", int, key) if "seed" in raw else 0,
            architecture=architecture,
            freeze_image=freeze_image,
            convert_image=self._image_ref(raw, "convert_image", "convert", key),
            ir_precision=self._choice(raw, "ir_precision", IR_PRECISIONS, key),
            training=self._training(raw, key) if checkpoint == "trained" else None,
            checkpoint_path=(check_relative_path(self._get(raw, "checkpoint_path", str, key), file=self.source,
                                                 key=f"{key}.checkpoint_path") if checkpoint == "checkout" else None),
            lstm=self._choice(raw, "lstm", LSTM_VARIANTS, key) if "lstm" in raw else "fused",
            weight_compression=(self._choice(raw, "weight_compression", WEIGHT_COMPRESSIONS, key)
                                if "weight_compression" in raw else "none"),
            exporter=exporter,
            app_image=self._app_image_ref(raw, key) if "app_image" in raw else None,
            stage_time_limit=(self._get(raw, "stage_time_limit", int, key) if "stage_time_limit" in raw
                              else DEFAULT_STAGE_TIME_LIMIT),
        )
        if checkpoint == "pbmm" and (target.lstm, target.exporter) != ("fused", "builtin"):
            raise ConfigError("checkpoint = \"pbmm\" takes the graph from the model file, so lstm and exporter "
                              "cannot choose another one; drop them", file=self.source, key=f"{key}.checkpoint")
        if target.lstm == "hoisted" and target.exporter != "builtin":
            raise ConfigError(f"lstm = \"hoisted\" is a graph of ds2ir's own exporter, but exporter is "
                              f"\"{target.exporter}\"; drop one of the two", file=self.source, key=f"{key}.lstm")
        return target

    # -- helpers --------------------------------------------------------------

    def _matrix(self, value: Any) -> Tuple[str, ...]:
        """``matrix``: the targets `invoke matrix` builds by default, each one defined."""
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise ConfigError(f"must be a list of target names, got {value!r}", file=self.source, key="matrix")
        for name in value:
            if name not in self._raw_targets:
                raise ConfigError(f"'{name}' is not a target", file=self.source, key="matrix")
        return tuple(value)

    def _training(self, raw: Mapping[str, Any], key: str) -> Training:
        return Training(
            audio=check_relative_path(self._get(raw, "training_audio", str, key), file=self.source, key=f"{key}.training_audio"),
            transcript=check_relative_path(self._get(raw, "training_transcript", str, key), file=self.source,
                                           key=f"{key}.training_transcript"),
            epochs=self._get(raw, "epochs", int, key),
            learning_rate=self._get(raw, "learning_rate", float, key),
        )

    def _resolve(self, name: str, chain: Tuple[str, ...]) -> Dict[str, Any]:
        if name not in self._raw_targets:
            hint = difflib.get_close_matches(name, self._raw_targets, n=1)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            raise ConfigError(
                f"unknown target '{name}'.{suggestion} Known targets: {', '.join(sorted(self._raw_targets))}.",
                file=self.source,
            )
        if name in chain:
            raise ConfigError(f"'extends' forms a cycle: {' -> '.join(chain + (name,))}", file=self.source, key=f"targets.{name}")
        raw = self._raw_targets[name]
        if not isinstance(raw, dict):
            raise ConfigError("must be a table", file=self.source, key=f"targets.{name}")
        _check_keys(raw, _TARGET_KEYS, self.source, f"targets.{name}")
        merged: Dict[str, Any] = {}
        if "extends" in raw:
            merged.update(self._resolve(self._get(raw, "extends", str, f"targets.{name}"), chain + (name,)))
            merged.pop("description", None)
        merged.update({k: v for k, v in raw.items() if k != "extends"})
        return merged

    def _table(self, key: str) -> Dict[str, Any]:
        value = self._data.get(key)
        if not isinstance(value, dict) or not value:
            raise ConfigError("missing or empty table", file=self.source, key=key)
        return value

    def _get(self, raw: Mapping[str, Any], name: str, kind: type, key: str) -> Any:
        where = f"{key}.{name}" if key else name
        if name not in raw:
            raise ConfigError("missing required key", file=self.source, key=where)
        value = raw[name]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"must be {kind.__name__}, got {value!r}", file=self.source, key=where)
        if name == "n_input" and value > MEL_CHANNELS:
            raise ConfigError(f"n_input is {value}, but MFCCs are computed from {MEL_CHANNELS} mel channels, so at most "
                              f"{MEL_CHANNELS} coefficients exist (DeepSpeech uses 26)", file=self.source, key=where)
        if kind is int and name in INT_RANGES and not INT_RANGES[name][0] <= value <= INT_RANGES[name][1]:
            low, high = INT_RANGES[name]
            raise ConfigError(f"{name} must be a whole number from {low} to {high}, got {value}", file=self.source, key=where)
        if kind is float and name in FLOAT_UPPER and not (math.isfinite(value) and 0 < value <= FLOAT_UPPER[name]):
            raise ConfigError(f"{name} must be a finite number greater than 0 and at most {FLOAT_UPPER[name]:g}, "
                              f"got {value}", file=self.source, key=where)
        return value

    def _choice(self, raw: Mapping[str, Any], name: str, allowed: Tuple[str, ...], key: str) -> str:
        value = self._get(raw, name, str, key)
        if value not in allowed:
            raise ConfigError(f"must be one of {', '.join(allowed)}, got '{value}'", file=self.source, key=f"{key}.{name}")
        return value

    def _image(self, name: str, raw: Any, project: Optional[Path]) -> ImageSpec:
        key = f"images.{name}"
        if not isinstance(raw, dict):
            raise ConfigError("must be a table", file=self.source, key=key)
        _check_keys(raw, _IMAGE_KEYS, self.source, key)
        python = self._get(raw, "python", str, key)
        if not re.fullmatch(r"3\.\d+", python):
            raise ConfigError(f"must be a Python version 'X.Y', got '{python}'", file=self.source, key=f"{key}.python")
        lock = check_relative_path(self._get(raw, "lock", str, key), file=self.source, key=f"{key}.lock", suffix=".txt")
        dockerfile = check_relative_path(self._get(raw, "dockerfile", str, key), file=self.source, key=f"{key}.dockerfile")
        if project is not None and not (project / dockerfile).is_file():
            raise ConfigError(f"the Dockerfile {project / dockerfile} does not exist", file=self.source, key=f"{key}.dockerfile")
        base_image = check_text(self._get(raw, "base_image", str, key), what="base image", file=self.source,
                                key=f"{key}.base_image")
        if not _IMAGE_REFERENCE.fullmatch(base_image):
            raise ConfigError(f"must be an image reference like python:3.7-slim, got {base_image!r}", file=self.source,
                              key=f"{key}.base_image")
        spec = ImageSpec(
            name=name,
            stage=self._choice(raw, "stage", STAGES, key),
            dockerfile=dockerfile,
            base_image=base_image,
            python=python,
            lock=lock,
            platform=self._platform(raw, key),
        )
        if spec.stage == "convert":
            spec = replace(spec, converter=self._choice(raw, "converter", CONVERTERS, key) if "converter" in raw else CONVERTERS[0])
        elif "converter" in raw:
            raise ConfigError("only convert images have a converter", file=self.source, key=f"{key}.converter")
        if "source_release" in raw or "constraints" in raw:
            spec = self._source(spec, raw, project, key)
        if project is not None and not (project / lock).is_file():
            raise ConfigError(f"the lock file {project / lock} does not exist; write the image's pins in "
                              f"{spec.lock_input} and run 'invoke lock'", file=self.source, key=f"{key}.lock")
        return spec

    def _platform(self, raw: Mapping[str, Any], key: str) -> str:
        if "platform" not in raw:
            return DEFAULT_PLATFORM
        value = self._get(raw, "platform", str, key)
        if not PLATFORM_PATTERN.fullmatch(value):
            raise ConfigError(f"must be a platform like {DEFAULT_PLATFORM} or linux/arm64, got {value!r}", file=self.source,
                              key=f"{key}.platform")
        return value

    def _source(self, spec: ImageSpec, raw: Mapping[str, Any], project: Optional[Path], key: str) -> ImageSpec:
        """A freeze image installing a release's DeepSpeech source: that release and the pip constraints, both given."""
        if spec.stage != "freeze":
            raise ConfigError("only freeze images install a release's source", file=self.source, key=f"{key}.source_release")
        release = self._get(raw, "source_release", str, key)
        constraints = self._get(raw, "constraints", str, key)
        if release not in self.releases:
            raise ConfigError(f"release '{release}' is not defined under [releases]", file=self.source, key=f"{key}.source_release")
        check_relative_path(constraints, file=self.source, key=f"{key}.constraints")
        if project is not None and not (project / constraints).is_file():
            raise ConfigError(f"the constraints file {project / constraints} does not exist", file=self.source,
                              key=f"{key}.constraints")
        return replace(spec, source_release=release, constraints=constraints, source_url=self.releases[release].source_url)

    def _check_upstream(self, image: ImageSpec, arch: Architecture, key: str) -> None:
        """DeepSpeech's own exporter needs its source in the freeze image, and can only write its fixed feature shape."""
        if image.source_release is None:
            raise ConfigError(f"exporter 'deepspeech' runs DeepSpeech.py from a release's source, but freeze image "
                              f"'{image.name}' installs none; use a freeze image with source_release and constraints "
                              f"(e.g. freeze-deepspeech0.8.2)", file=self.source, key=f"{key}.freeze_image")
        if (arch.n_input, arch.n_context) != (26, 9):
            raise ConfigError(f"DeepSpeech.py has no flags for n_input and n_context (its util/config.py fixes them at "
                              f"26 and 9), got {arch.n_input} and {arch.n_context}; use exporter 'builtin' for other "
                              f"values", file=self.source, key=f"{key}.exporter")

    def _release(self, name: str, raw: Any) -> Release:
        key = f"releases.{name}"
        if not isinstance(raw, dict):
            raise ConfigError("must be a table", file=self.source, key=key)
        _check_keys(raw, _RELEASE_KEYS, self.source, key)
        return Release(
            name=name,
            graph_version=self._get(raw, "graph_version", int, key),
            checkpoint_url=self._url(raw, "checkpoint_url", key) if "checkpoint_url" in raw else None,
            model_url=self._url(raw, "model_url", key) if "model_url" in raw else None,
            scorer_url=self._url(raw, "scorer_url", key) if "scorer_url" in raw else None,
            source_url=self._url(raw, "source_url", key),
            n_hidden=self._get(raw, "n_hidden", int, key),
        )

    def _url(self, raw: Mapping[str, Any], name: str, key: str) -> str:
        url = self._get(raw, name, str, key)
        if not _URL.fullmatch(url):
            raise ConfigError(f"must be an http(s) URL without spaces or control characters, got {url!r}",
                              file=self.source, key=f"{key}.{name}")
        return url

    def _app_image_ref(self, raw: Mapping[str, Any], key: str) -> ImageSpec:
        """``app_image``: an app image, or a convert image (both hold the OpenVINO runtime)."""
        image = self._named_image(raw, "app_image", key)
        if image.stage == "freeze":
            raise ConfigError(f"image '{image.name}' is a freeze image; the application needs OpenVINO: an app or "
                              f"convert image", file=self.source, key=f"{key}.app_image")
        return image

    def _image_ref(self, raw: Mapping[str, Any], name: str, stage: str, key: str) -> ImageSpec:
        image = self._named_image(raw, name, key)
        if image.stage != stage:
            raise ConfigError(f"image '{image.name}' is a {image.stage} image, not a {stage} image", file=self.source, key=f"{key}.{name}")
        return image

    def _named_image(self, raw: Mapping[str, Any], name: str, key: str) -> ImageSpec:
        """The image a target's key ``name`` names, defined under [images]."""
        image_name = self._get(raw, name, str, key)
        image = self.images.get(image_name)
        if image is None:
            raise ConfigError(f"image '{image_name}' is not defined under [images]", file=self.source, key=f"{key}.{name}")
        return image


def _check_keys(raw: Mapping[str, Any], allowed: set, source: str, key: str) -> None:
    for name in raw:
        if name not in allowed:
            hint = difflib.get_close_matches(name, allowed, n=1)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            where = f"{key}.{name}" if key else name
            raise ConfigError(f"unknown key.{suggestion}", file=source, key=where)


def load_target(name: Optional[str] = None, path: Optional[Path] = None, *, project: Optional[Path] = None) -> Target:
    """The named target (default: the file's default_target), validated (with lock files under ``project``)."""
    return TargetsFile.load(path, project=project).target(name)
