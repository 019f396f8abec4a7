"""What a target is: releases, stage images, training and the target itself, with the values each key allows."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import PurePosixPath
from typing import Any, Dict, Optional, Tuple

from ds2ir.model.architecture import (
    INPUT_NODE,
    LOGITS,
    LSTM_FINAL_C,
    LSTM_FINAL_H,
    PREVIOUS_STATE_C,
    PREVIOUS_STATE_H,
    Alphabet,
    Architecture,
)
from ds2ir.model.variants import VARIANT_SEPARATOR, variant_keys, variant_name

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
# A stage's container is stopped past this (targets.toml: stage_time_limit); the released 0.8.2
# checkpoint freezes and converts in minutes, training a small target in well under an hour.
DEFAULT_STAGE_TIME_LIMIT = 2 * 3600
INFERENCE_PRECISIONS = ("f32", "bf16")
#: what an image is for: the freeze or convert stage, or the application (`invoke transcribe`)
STAGES = ("freeze", "convert", "app")
#: the script of DeepSpeech's source tree that trains and exports (exporter = "deepspeech")
SOURCE_ENTRY_POINT = "DeepSpeech.py"
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
    #: every variant the target is converted to, its default (ir_precision, lstm, weight_compression) first;
    #: empty: only this one
    variants: Tuple[str, ...] = ()

    @property
    def application_image(self) -> ImageSpec:
        """The image that runs the IR as an application: ``app_image``, else the convert image."""
        return self.app_image or self.convert_image

    @property
    def n_classes(self) -> int:
        return self.alphabet.n_classes


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
        del data["variants"]  # nor on which other variants it is converted to
        return data

    @property
    def variant(self) -> str:
        """The IR variant in a word or two: fp32, fp16, int8, hoisted-fp32, hoisted-int8."""
        return variant_name(self.lstm, self.ir_precision, self.weight_compression)

    @property
    def default_variant(self) -> str:
        """The variant `invoke build --target NAME` makes: the target's own keys."""
        return self.variants[0] if self.variants else self.variant

    @property
    def is_default_variant(self) -> bool:
        return self.variant == self.default_variant

    @property
    def own_frozen_graph(self) -> bool:
        """Whether this variant's frozen graph differs from the default variant's (another LSTM)."""
        return self.lstm != variant_keys(self.default_variant)["lstm"]

    @property
    def label(self) -> str:
        """The target's name, with ``@variant`` unless it is the default variant: ``synthetic-small@int8``."""
        return self.name if self.is_default_variant else f"{self.name}{VARIANT_SEPARATOR}{self.variant}"

    def with_variant(self, name: Optional[str]) -> "Target":
        """This target converted to variant ``name`` (None: the default); a KeyError names the known ones."""
        name = name or self.default_variant
        if name not in (self.variants or (self.variant,)):
            raise KeyError(name)
        keys = variant_keys(name)
        return replace(self, lstm=keys["lstm"], ir_precision=keys["ir_precision"],
                       weight_compression=keys["weight_compression"])

