"""Provenance manifest of a build, and the expected-hash lock of its outputs.

``artifacts/<target>/manifest.json`` says what went in (checkpoint files, images and
their packages, commands) and what came out (SHA-256 of each output). The lock
``outputs.lock.json`` in the repository pins the outputs' hashes per target, so
``invoke build --check`` proves a rebuild reproduces them bit for bit.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional

from ds2ir import atomic
from ds2ir.errors import ConfigError, ReproducibilityError
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target

LOCK_FILE_NAME = "outputs.lock.json"


def output_files(layout: ArtifactLayout) -> Dict[str, Path]:
    """The outputs whose bytes a build promises: the frozen graph (plain and memory-mapped) and the IR,
    named as the default variant's are under its target directory (``frozen/output_graph.pb``...)."""
    return {f"{path.parent.name}/{path.name}": path
            for path in (layout.frozen_graph, layout.frozen_pbmm, layout.ir_xml, layout.ir_bin)}


def read_lock(path: Path) -> Dict[str, Dict[str, str]]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"not valid JSON: {exc}", file=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError("must map target names to {file: sha256}", file=str(path))
    return data


def lock_outputs(path: Path, target: str, hashes: Mapping[str, str]) -> None:
    """Record ``hashes`` as the expected outputs of ``target`` (deliberately: `invoke lock-outputs`)."""
    data = read_lock(path)
    data[target] = dict(sorted(hashes.items()))
    atomic.write_json(path, data)


def check_outputs(path: Path, target: str, hashes: Mapping[str, str]) -> None:
    """Raise one ReproducibilityError naming every output whose hash differs from the lock."""
    expected = read_lock(path).get(target)
    if expected is None:
        raise ReproducibilityError(
            f"{path} has no expected hashes for target '{target}'. Build it, check the outputs, and record "
            f"them with 'invoke lock-outputs --target {target}'."
        )
    problems: List[str] = []
    for name in sorted(set(expected) | set(hashes)):
        want, got = expected.get(name, "(not locked)"), hashes.get(name, "(not built)")
        if want != got:
            problems.append(f"{name}: expected {want}, got {got}")
    if problems:
        raise ReproducibilityError(
            f"The rebuild of '{target}' is not bit-identical to {path}: " + "; ".join(problems) + ". "
            f"If the change is intended (new versions or code), record it with 'invoke lock-outputs --target {target}' "
            f"and commit the lock; otherwise find what made the build nondeterministic."
        )


def write(layout: ArtifactLayout, target: Target, *, inputs: Mapping[str, str], outputs: Mapping[str, str],
          images: Mapping[str, Mapping[str, object]], stages: Mapping[str, Mapping[str, object]],
          docker_version: str, cpu: Mapping[str, object], engines: Optional[Mapping[str, object]] = None,
          engine: Optional[Mapping[str, str]] = None) -> Path:
    """Write the variant's manifest.json (artifacts/<target>/ for the default variant) atomically: plain, sorted JSON.

    ``cpu``: the host's CPU (ds2ir.model.cpu.describe); ``engines``: the check stage's record of the kernels
    each engine used (TF's mkl-dnn sgemm, numpy's OpenBLAS core, OpenVINO's primitives), if it ran;
    ``engine``: the container engine's address and where its stages found the artifacts (bind mount or volume).
    """
    conversion = layout.ir_dir / "conversion.json"
    manifest = {
        "target": target.fingerprint(),
        "inputs": dict(inputs),
        "outputs": dict(outputs),
        "images": {stage: dict(info) for stage, info in images.items()},
        "stages": {stage: dict(info) for stage, info in stages.items()},
        "mo": json.loads(conversion.read_text()) if conversion.is_file() else None,
        "checkpoint_verification": (json.loads(layout.verification.read_text()) if layout.verification.is_file()
                                    else None),
        "docker_server": docker_version,
        "container_engine": dict(engine) if engine is not None else None,
        "cpu": dict(cpu),
        "engines": dict(engines) if engines is not None else None,
    }
    path = layout.manifest
    atomic.write_json(path, manifest)
    return path
