"""The one way a stage container starts (build, verify, transcribe, bench, matrix): the stage image on its
platform, no network, as the calling user, the artifacts directory at /artifacts, the targets file and
any further inputs read-only, the stage environment, labels that find it again after a killed build,
and a time limit."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from ds2ir.host import storage, testcoverage
from ds2ir.host.clean import ROOT_DIRECTORIES
from ds2ir.host.docker import ARTIFACTS_LABEL, OWNER_LABEL, Docker
from ds2ir.host.engines import bind_mount
from ds2ir.model.layout import CONTAINER_ARTIFACTS, CONTAINER_TARGETS
from ds2ir.model.variants import VARIANT_SEPARATOR

# Stages have no network, so tools must not try to phone home. OpenVINO's telemetry (mo's and
# ovc's, which honour CI=true, and NNCF's, which honours NNCF_CI) forks a sender from a worker
# thread while the main thread imports: seen deadlocking int8 compression after mo, in the
# same process, in about one run of four (py-spy: both threads waiting for logging's lock).
STAGE_ENVIRONMENT = {"CI": "true", "NNCF_CI": "1"}
# Host variables a stage container gets when they are set: the instruction-set limits of OpenVINO's
# oneDNN kernels and of OpenBLAS (run a build as a narrower CPU would; they change what a stage
# computes, so they are part of its stamp key) and ds2ir's fault injection (tests watch the gates
# fail; not in the key: a gate that fails writes no stamp, so the next build runs it again).
ISA_ENVIRONMENT = ("ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE")
FORWARDED_ENVIRONMENT = ISA_ENVIRONMENT + ("DS2IR_INJECT_FAULT",)


def forwarded_environment() -> Dict[str, str]:
    """The FORWARDED_ENVIRONMENT variables the host has set (non-empty)."""
    return {key: os.environ[key] for key in FORWARDED_ENVIRONMENT if os.environ.get(key)}


def stage_environment() -> Dict[str, str]:
    """What every stage container gets: HOME, the stage variables and the forwarded ones, sorted."""
    return {"HOME": "/tmp", **dict(sorted({**STAGE_ENVIRONMENT, **forwarded_environment()}.items()))}


class StageLauncher:
    """Starts stage containers over one artifacts directory and targets file."""

    def __init__(self, docker: Docker, *, artifacts: Path, targets: Path):
        self.docker = docker
        self.artifacts = artifacts
        self.targets = targets

    def run(self, *, step: str, image: str, args: Sequence[str], platform: str,
            read_only: Optional[Mapping[Path, str]] = None, capture: bool = False, entrypoint: Optional[str] = None,
            timeout: Optional[float] = None) -> str:
        """Run one stage in a throwaway container; return its output when ``capture``.

        ``read_only`` maps more host paths to container paths, mounted read-only. On failure a
        ContainerError carries the log tail; past ``timeout`` seconds the container is stopped and
        removed and a CommandTimeoutError says so.
        """
        if not self.docker.runner.dry_run:
            self.artifacts.mkdir(parents=True, exist_ok=True)  # --mount, unlike -v, does not create a missing source
        if storage.choose(self.docker, self.artifacts, image, platform) == "volume":
            return self._run_on_volume(step=step, image=image, args=args, platform=platform, read_only=read_only or {},
                                       capture=capture, entrypoint=entrypoint, timeout=timeout)
        mounts = [bind_mount(self.artifacts.resolve(), str(CONTAINER_ARTIFACTS)),
                  bind_mount(self.targets.resolve(), str(CONTAINER_TARGETS), read_only=True)]
        mounts += [bind_mount(host_path.resolve(), inside, read_only=True)
                   for host_path, inside in sorted((read_only or {}).items())]
        options: List[str] = []
        if os.environ.get(testcoverage.ENV):  # `invoke test --coverage`: measure the code in here too
            options += testcoverage.container_options(Path(os.environ[testcoverage.ENV]))
        return self.docker.run_container(
            step=step, image=image, args=args, platform=platform, mounts=mounts, environment=stage_environment(),
            labels=self._labels(), user=f"{os.getuid()}:{os.getgid()}", entrypoint=entrypoint, options=options,
            capture=capture, timeout=timeout)

    def where(self, image: str, platform: str) -> Dict[str, str]:
        """The engine and where its stages find the artifacts, for the manifest."""
        kind = storage.choose(self.docker, self.artifacts, image, platform)
        place = (f"volume {storage.artifacts_volume(self.artifacts)} (copied in and out)" if kind == "volume"
                 else f"bind mount of {self.artifacts.resolve()}")
        return {"engine": self.docker.engine(), "artifacts": place}

    def _labels(self) -> Dict[str, str]:
        return {ARTIFACTS_LABEL: str(self.artifacts.resolve()), OWNER_LABEL: str(os.getpid())}

    def _run_on_volume(self, *, step: str, image: str, args: Sequence[str], platform: str, read_only: Mapping[Path, str],
                       capture: bool, entrypoint: Optional[str], timeout: Optional[float]) -> str:
        """The same run on an engine that cannot see the artifacts: its target's directory (and the root
        directories bench and matrix use) copied into the artifacts volume and back (storage.py)."""
        label = args[list(args).index("--target") + 1] if "--target" in args else ""
        target = label.split(VARIANT_SEPARATOR, 1)[0]  # a variant's files are under its target's directory
        scope = [target, *[name for name in ROOT_DIRECTORIES if (self.artifacts / name).is_dir()]]
        run = storage.VolumeRun(self.docker, artifacts=self.artifacts, image=image, platform=platform, scope=scope)
        try:
            mounts = run.mounts((self.targets, str(CONTAINER_TARGETS)), read_only)
            try:
                return self.docker.run_container(
                    step=step, image=image, args=args, platform=platform, mounts=mounts,
                    environment=stage_environment(), labels=self._labels(), user=f"{os.getuid()}:{os.getgid()}",
                    entrypoint=entrypoint, capture=capture, timeout=timeout)
            finally:  # a failed stage's report (verify-ir) comes back too
                run.bring_back()
        finally:
            run.close()
