"""`invoke doctor`: everything a build depends on, checked before any work, as a checklist.

Each check either says what it found or carries the one-paragraph error a build would
stop with (naming the fix). A failed blocking check means `invoke build` cannot succeed;
a failed non-blocking one only limits some tasks (compose).
"""
from __future__ import annotations

import functools
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from ds2ir.errors import ConfigError, Ds2irError, StorageError
from ds2ir.host import storage
from ds2ir.host.docker import Docker
from ds2ir.host.images import available_base_image
from ds2ir.host.project import Project
from ds2ir.model.targets import ImageSpec
from ds2ir.model.targets_file import TargetsFile

# A release build keeps the extracted checkpoint (~0.75 GB), the frozen graph and the IR
# (~190 MB each) and the check data; 2 GiB leaves room for the temporaries beside them.
MIN_FREE_BYTES = 2 * 1024 ** 3


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    name: str
    ok: bool
    detail: str
    blocking: bool = True

    @property
    def blocks(self) -> bool:
        """Whether this result stops a build."""
        return self.blocking and not self.ok


def check(name: str, probe: Callable[[], str], *, blocking: bool = True) -> Check:
    """Run ``probe``: its return value is the finding, a Ds2irError the failure."""
    try:
        return Check(name, True, probe(), blocking)
    except Ds2irError as exc:
        return Check(name, False, str(exc), blocking)


def run_checks(docker: Docker, project: Project, *, min_free_bytes: int = MIN_FREE_BYTES) -> List[Check]:
    """Every check, in the order a build meets them, for ``project``'s targets file and artifacts."""
    checks = [
        check("docker client", docker.client_version),
        check("container engine", lambda: f"{docker.engine()}: version {docker.preflight()}"),
        check("compose (only for 'invoke compose')", lambda: " ".join(docker.compose_command()), blocking=False),
    ]
    targets: Optional[TargetsFile] = None
    try:
        targets = project.targets_file()
        checks.append(Check("targets file", True, f"{project.targets} ({len(targets.names)} targets)"))
    except ConfigError as exc:
        checks.append(Check("targets file", False, str(exc)))
    if targets is not None and checks[1].ok:
        checks.append(_platforms(docker, targets))
        checks += [check(f"base image of {name}", functools.partial(_base_image, docker, spec))
                   for name, spec in sorted(targets.images.items())]
    else:
        checks.append(Check("base images", False, "not checked: that needs a usable Docker daemon and targets file"))
    checks.append(check("free space for artifacts", lambda: _free_space(project.artifacts, min_free_bytes)))
    checks.append(check("write access to artifacts", lambda: _write_access(project.artifacts)))
    checks.append(check("where stage containers find the artifacts",
                        lambda: storage.describe(docker, project.artifacts), blocking=False))
    return checks


def render(checks: List[Check]) -> str:
    """The checklist as text, one line per check, then the verdict."""
    lines = []
    for item in checks:
        mark = "ok" if item.ok else ("FAIL" if item.blocking else "warn")
        lines.append(f"[{mark:>4}] {item.name}: {item.detail}")
    blocking = sum(item.blocks for item in checks)
    lines.append(f"{blocking} problem(s) would stop a build; fix them as each line says."
                 if blocking else "ready to build")
    return "\n".join(lines)


def _platforms(docker: Docker, targets: TargetsFile) -> Check:
    """The engine's platform, and which images it would run under emulation (a warning, not a stop)."""
    name = "engine platform"
    try:
        native = docker.server_platform()
    except Ds2irError as exc:
        return Check(name, False, str(exc), blocking=False)
    foreign = sorted({spec.platform for spec in targets.images.values()} - {native})
    if not foreign:
        return Check(name, True, f"{native}: every image runs natively", blocking=False)
    emulated = "; ".join(f"{platform}: {', '.join(sorted(n for n, s in targets.images.items() if s.platform == platform))}"
                         for platform in foreign)
    return Check(name, False, (
        f"the engine ({docker.engine()}) runs {native}, so these images would run under emulation ({emulated}): "
        f"slowly, and only where the engine has QEMU's binfmt handlers installed. TensorFlow 1.15 exists only for "
        f"linux/amd64: point DOCKER_HOST at an x86-64 engine to build at native speed."), blocking=False)


def _base_image(docker: Docker, spec: ImageSpec) -> str:
    present = docker.resolve_base_image(spec.base_image)
    if docker.image_id(present):
        return present + (" (offline stand-in)" if present != spec.base_image else " (present)")
    return available_base_image(docker, spec) + " (pulled)"


def _existing(path: Path) -> Path:
    """``path``, or the nearest ancestor that exists (where it would be created)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _free_space(artifacts: Path, needed: int) -> str:
    where = _existing(artifacts)
    free = shutil.disk_usage(str(where)).free
    if free < needed:
        raise StorageError(
            f"Only {free / 1024 ** 2:.0f} MiB are free on the filesystem of {where}; a release build needs about "
            f"{needed / 1024 ** 3:.0f} GiB. Free space there ('df -h {where}') or pass --artifacts DIR on a larger filesystem."
        )
    return f"{free / 1024 ** 3:.1f} GiB free at {where}"


def _write_access(artifacts: Path) -> str:
    where = _existing(artifacts)
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".ds2ir-doctor-", dir=str(where)))
    except OSError as exc:
        raise StorageError.from_os_error(exc, str(where)) or StorageError(
            f"Cannot create files in {where} ({exc.strerror}). Pass --artifacts DIR on a writable local directory."
        ) from exc
    return f"{where} is writable" + ("" if where == artifacts else f" ({artifacts} will be created)")
