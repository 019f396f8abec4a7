"""targets.toml read and validated: every error names the file and the key."""
from __future__ import annotations

import difflib
import math
import re
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import AbstractSet, Any, Dict, Mapping, Optional, Tuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised in the py3.7 freeze image
    import tomli as tomllib

from ds2ir.errors import ConfigError
from ds2ir.model.architecture import MEL_CHANNELS, Architecture
from ds2ir.model.layout import TARGETS_ENV
from ds2ir.model.targets import (
    CHECKPOINT_KINDS,
    CONVERTERS,
    DEFAULT_PLATFORM,
    DEFAULT_STAGE_TIME_LIMIT,
    EXPORTERS,
    IR_PRECISIONS,
    LSTM_VARIANTS,
    PLATFORM_PATTERN,
    STAGES,
    WEIGHT_COMPRESSIONS,
    ImageSpec,
    Release,
    Target,
    Training,
)
from ds2ir.model.variants import VARIANT_SEPARATOR, listed_variants, old_variant_hint
from ds2ir.paths import check_image_name, check_name, check_relative_path, check_text

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
                "stage_time_limit", "variants"} | _ARCH_KEYS


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
    def load(cls, path: Path, *, project: Optional[Path] = None) -> "TargetsFile":
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ConfigError(f"the targets file {path} does not exist; set {TARGETS_ENV} or run from a checkout") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", file=str(path)) from exc
        return cls(data, source=str(path), project=project)

    def target(self, name: Optional[str] = None) -> Target:
        """The target ``name`` (default: default_target), or one of its variants: ``NAME@VARIANT``."""
        base, separator, variant = (name or self.default_target).partition(VARIANT_SEPARATOR)
        target = self._target(base)
        if not separator:
            return target
        try:
            return target.with_variant(variant)
        except KeyError as exc:
            raise ConfigError(f"target '{base}' has no variant '{variant}'; it is converted to "
                              f"{', '.join(target.variants)} (the first is its default). Add the variant to its "
                              f"variants list in targets.toml, or pick one of those.", file=self.source,
                              key=f"targets.{base}.variants") from exc

    def _target(self, name: str) -> Target:
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
        if target.ir_precision == "FP16" and target.weight_compression == "int8":
            raise ConfigError("int8 weights are compressed from an FP32 IR, so ir_precision \"FP16\" and "
                              "weight_compression \"int8\" do not go together; drop one of the two (the int8 variant "
                              "is named int8)", file=self.source, key=f"{key}.weight_compression")
        fixed_graph = ("the .pbmm's graph" if checkpoint == "pbmm" else
                       f"exporter \"{exporter}\"" if exporter != "builtin" else None)
        return replace(target, variants=listed_variants(
            raw.get("variants", []), default=target.variant, fixed_graph=fixed_graph,
            inherited="variants" not in self._raw_targets[name], source=self.source, key=f"{key}.variants"))

    # -- helpers --------------------------------------------------------------

    def _matrix(self, value: Any) -> Tuple[str, ...]:
        """``matrix``: the cells `invoke matrix` builds by default, each a target or ``TARGET@VARIANT``."""
        if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
            raise ConfigError(f"must be a list of target names, got {value!r}", file=self.source, key="matrix")
        for name in value:
            if name.partition(VARIANT_SEPARATOR)[0] not in self._raw_targets:
                raise ConfigError(f"'{name}' is not a target", file=self.source, key="matrix")
            self.target(name)
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
            suggestion = old_variant_hint(name, self._raw_targets) or (f" Did you mean '{hint[0]}'?" if hint else "")
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
        value: str = self._get(raw, name, str, key)
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
        value: str = self._get(raw, "platform", str, key)
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
        url: str = self._get(raw, name, str, key)
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


def _check_keys(raw: Mapping[str, Any], allowed: AbstractSet[str], source: str, key: str) -> None:
    for name in raw:
        if name not in allowed:
            hint = difflib.get_close_matches(name, allowed, n=1)
            suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
            where = f"{key}.{name}" if key else name
            raise ConfigError(f"unknown key.{suggestion}", file=source, key=where)


def load_target(path: Path, name: Optional[str] = None, *, project: Optional[Path] = None) -> Target:
    """The named target (default: the file's default_target), validated (with lock files under ``project``)."""
    return TargetsFile.load(path, project=project).target(name)
