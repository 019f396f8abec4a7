"""Docker helpers: preflight, content-addressed stage images, stage containers, compose.

All Docker calls go through :class:`ds2ir.runner.Runner`, so they are echoed and
their failures carry the command, exit code and the last lines of output.
"""
from __future__ import annotations

import contextlib
import copy
import os
import uuid
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from ds2ir import atomic
from ds2ir.errors import (
    BaseImageError,
    CommandError,
    CommandTimeoutError,
    ConfigError,
    ContainerError,
    DockerUnavailableError,
    MissingInputError,
)
from ds2ir.host import digests, engines, testcoverage, upstream
from ds2ir.host.engines import bind_mount
from ds2ir.model.layout import CONTAINER_ARTIFACTS, CONTAINER_TARGETS
from ds2ir.model.targets import DEFAULT_PLATFORM, ImageSpec, Target
from ds2ir.paths import check_text
from ds2ir.runner import Runner, StrPath, quote

OFFLINE_PREFIX = "ds2ir-offline/"
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
# The package files that go into the images, beside the image's lock (.dockerignore keeps out the rest).
PACKAGE_FILES = ("pyproject.toml", "src")
# Host code never enters an image, nor its content tag: editing it rebuilds no image and reruns no stage
# (.dockerignore keeps it out of the build context too).
HOST_ONLY = "src/ds2ir/host"
# Stage containers carry the artifacts directory they write and the PID of the process that
# started them, so a build can find the ones a killed build left running (remove_stray_containers).
ARTIFACTS_LABEL = "ds2ir.artifacts"
OWNER_LABEL = "ds2ir.owner-pid"
# Every Docker call but a stage's own run (limited by the target's stage_time_limit) has a time
# limit, so a daemon that accepts connections but never answers fails clearly instead of hanging.
TIMEOUT_ENV = "DS2IR_DOCKER_TIMEOUT"
DEFAULT_TIMEOUT = 60.0  # version, inspect, ps, rm, listing an image's packages: seconds when healthy
BUILD_TIMEOUT = 3 * 3600.0  # docker build, pull, import: a cold image build downloads gigabytes


def forwarded_environment() -> Dict[str, str]:
    """The FORWARDED_ENVIRONMENT variables the host has set (non-empty)."""
    return {key: os.environ[key] for key in FORWARDED_ENVIRONMENT if os.environ.get(key)}


def offline_substitute(public_image: str) -> str:
    """The name `invoke base-images` gives its locally built stand-in for a public image."""
    return OFFLINE_PREFIX + public_image


class Docker:
    """The Docker engine as ds2ir uses it."""

    def __init__(self, runner: Runner, *, executable: str = "docker", timeout: Optional[float] = None):
        self.runner = runner
        self.executable = executable
        self.timeout = timeout if timeout is not None else default_timeout()

    @classmethod
    def from_environment(cls, runner: Runner) -> "Docker":
        """The engine the user chose ($DS2IR_ENGINE: docker or podman), else Docker (Podman where only it is installed)."""
        return cls(runner, executable=engines.choose_executable())

    def call(self, argv: Sequence[StrPath], *, step: str, timeout: Optional[float] = None, **options: object) -> str:
        """Run a Docker command that is not a stage's own run, within ``timeout`` (default: self.timeout).

        Past it, the command is killed and a DockerUnavailableError names the engine."""
        limit = self.timeout if timeout is None else timeout
        try:
            return self.runner.run(argv, step=step, timeout=limit, **options)  # type: ignore[arg-type]
        except CommandTimeoutError as exc:
            raise DockerUnavailableError(
                f"The Docker engine ({self.engine()}) did not finish '{quote(argv)}' within {limit:g} s, so it was "
                f"stopped. A daemon that accepts connections but never answers is hung or overloaded: check it with "
                f"'{self.executable} info', restart it ('sudo systemctl restart docker'), or point DOCKER_HOST at a "
                f"working engine, then retry ({TIMEOUT_ENV} sets the limit for quick calls)."
            ) from exc

    def engine(self) -> str:
        """The engine as the user knows it: client and daemon address."""
        if engines.is_podman(self.executable):
            return f"Podman, client '{self.executable}', service {os.environ.get('CONTAINER_HOST') or 'local'}"
        return f"client '{self.executable}', daemon at {os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock'}"

    def with_runner(self, runner: Runner) -> "Docker":
        """The same engine, its commands run (and logged) by ``runner``: one log per build run in parallel."""
        engine = copy.copy(self)
        engine.runner = runner
        return engine

    # -- preflight -----------------------------------------------------------

    def preflight(self) -> str:
        """Check the engine answers before any work starts; return its version."""
        try:
            return self.call(
                [self.executable, "version", "--format", "{{.Server.Version}}"],
                step="docker preflight", capture=True, quiet=True,
            ).strip()
        except DockerUnavailableError:
            raise
        except Exception as exc:
            raise DockerUnavailableError(self._diagnose(str(exc))) from None

    def server_platform(self) -> str:
        """The engine's own platform (``linux/amd64``, ``linux/arm64``): what its containers run natively."""
        return self.call(engines.platform_query(self.executable), step="engine platform", capture=True, quiet=True).strip()

    def client_version(self) -> str:
        """The Docker client's version line; raises MissingInputError when it is not installed."""
        return self.call([self.executable, "--version"], step="docker client", capture=True, quiet=True).strip()

    def _diagnose(self, output: str) -> str:
        host = os.environ.get("DOCKER_HOST")
        if "not installed" in output:
            return (f"The Docker client '{self.executable}' is not installed. Install Docker "
                    f"(on Debian: 'apt-get install docker.io', or run scripts/bootstrap) and retry.")
        if "permission denied" in output.lower():
            return (f"The Docker daemon's socket {host or 'unix:///var/run/docker.sock'} is not accessible to this "
                    "user (permission denied). Add yourself to the 'docker' group ('sudo usermod -aG docker $USER', then log in again) "
                    "or run as a user who may use Docker.")
        if host:
            return (f"No Docker daemon answers at DOCKER_HOST={host}. Check that address, or unset "
                    f"DOCKER_HOST to use the local socket, then retry.")
        return ("The Docker daemon is not running (no answer on the local socket). Start it "
                "('sudo systemctl start docker', or 'dockerd &' where there is no systemd; "
                "scripts/bootstrap does this) and retry.")

    # -- images --------------------------------------------------------------

    def image_id(self, ref: str) -> Optional[str]:
        """The local image ID of ``ref``, or None when it is not present."""
        try:
            return self.call(
                [self.executable, "image", "inspect", "--format", "{{.Id}}", ref],
                step="inspect image", capture=True, quiet=True,
            ).strip()
        except DockerUnavailableError:
            raise
        except Exception:
            return None

    def image_size(self, ref: str) -> int:
        """The size of a local image in bytes (what `docker images` shows)."""
        return int(self.call([self.executable, "image", "inspect", "--format", "{{.Size}}", ref],
                             step="inspect image", capture=True, quiet=True).strip())

    def resolve_base_image(self, public_image: str) -> str:
        """The public base image, or its offline stand-in when one was built here."""
        substitute = offline_substitute(public_image)
        return substitute if self.image_id(substitute) else public_image

    def available_base_image(self, spec: ImageSpec) -> str:
        """The base image to build ``spec`` from: the offline stand-in or the public image, pulled if absent."""
        base = self.resolve_base_image(spec.base_image)
        if self.image_id(base):
            return base
        try:
            self.call([self.executable, "pull", "--platform", spec.platform, base], step=f"pull {base}", capture=True,
                      quiet=True, timeout=BUILD_TIMEOUT)
        except CommandError as exc:
            reason = exc.log_tail.strip().splitlines()[-1:] or [f"exit code {exc.exit_code}"]
            raise BaseImageError(
                f"The base image {base} of image '{spec.name}' ([images.\"{spec.name}\"].base_image of the targets file) "
                f"is not on this host, has no offline stand-in ({offline_substitute(base)}) and cannot be pulled: "
                f"{reason[0]}. Connect this host to its registry, or on an offline host build stand-ins for "
                f"python:X.Y-slim images with 'invoke base-images', or set base_image to an image you have; "
                f"'invoke doctor' checks every base image."
            ) from exc
        self.runner.say(f"pulled base image {base}")
        return base

    def stage_image_tag(self, spec: ImageSpec, base_image: str, project: Path, *, source: Optional[Path] = None) -> str:
        """A tag naming what the image contains: Dockerfile, build args, lock, constraints, package source
        and, for images installing DeepSpeech's source (``source_release``), the source archive's SHA-256."""
        if spec.source_release and source is None:
            raise MissingInputError(f"Image '{spec.name}' installs release {spec.source_release}'s source archive, "
                                    f"which was not given; build it through 'invoke images --target T' or 'invoke build'.")
        parts = [f"platform={spec.platform}\n".encode()]
        parts += [f"{key}={value}\n".encode() for key, value in sorted(spec.build_args(base_image).items())]
        parts += [str(path.relative_to(project)).encode() + b"\0" + path.read_bytes() for path in image_inputs(spec, project)]
        parts += [b"source\0" + digests.file_sha256(source).encode()] if source is not None else []
        return f"ds2ir/{spec.name}:{digests.sha256(*parts)[:12]}"

    def ensure_stage_image(self, spec: ImageSpec, project: Path, *, base_image: Optional[str] = None,
                           source: Optional[Path] = None) -> str:
        """Build the stage image unless an image with the same content tag exists (``source``: see stage_image_tag)."""
        base = base_image or self.resolve_base_image(spec.base_image)
        tag = self.stage_image_tag(spec, base, project, source=source)
        if self.image_id(tag):
            self.runner.say(f"image {tag} is up to date")
            return tag
        self.build_stage_image(spec, project, tag, base_image=base, source=source)
        return tag

    def build_stage_image(self, spec: ImageSpec, project: Path, tag: str, *, base_image: Optional[str] = None,
                          no_cache: bool = False, source: Optional[Path] = None) -> None:
        """Build the stage image as ``tag``; ``no_cache`` rebuilds every layer (what a cold build costs).

        The context is the checkout, or with a DeepSpeech ``source`` archive a generated one (upstream.py).
        """
        base = base_image or self.resolve_base_image(spec.base_image)
        if not self.runner.dry_run and not self.image_id(base):
            base = self.available_base_image(spec)  # fail before docker build, with the fix
        with contextlib.ExitStack() as stack:
            context = (stack.enter_context(upstream.build_context(spec, project, source, image_inputs(spec, project)))
                       if source else project)
            argv: List[str] = [self.executable, "build", "--platform", spec.platform, "-f", str(context / spec.dockerfile),
                               "-t", tag]
            argv += ["--no-cache"] if no_cache else []
            for key, value in sorted(spec.build_args(base).items()):
                argv += ["--build-arg", f"{key}={value}"]
            self.call(argv + [str(context)], step=f"build {spec.stage} image", env={"DOCKER_BUILDKIT": "0"},
                      timeout=BUILD_TIMEOUT)

    # -- containers ----------------------------------------------------------

    def run_stage(
        self,
        *,
        step: str,
        image: str,
        args: Sequence[str],
        artifacts: Path,
        targets: Path,
        read_only: Optional[Mapping[Path, str]] = None,
        capture: bool = False,
        entrypoint: Optional[str] = None,
        timeout: Optional[float] = None,
        platform: str = DEFAULT_PLATFORM,
    ) -> str:
        """Run one stage in a throwaway container: no network, as the calling user.

        The artifacts directory is mounted at /artifacts and the targets file at
        /etc/ds2ir/targets.toml; ``read_only`` maps more host paths to container paths,
        mounted read-only. On failure the container is removed and a ContainerError
        carries the log tail; past ``timeout`` seconds it is stopped and removed and a
        CommandTimeoutError says so.
        """
        name = f"ds2ir-{step.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
        if not self.runner.dry_run:
            artifacts.mkdir(parents=True, exist_ok=True)  # --mount, unlike -v, does not create a missing source
        argv: List[str] = [
            self.executable, "run", "--rm", "--platform", platform, *engines.run_options(self.executable),
            "--name", name, "--network", "none",
            "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
            *[arg for key, value in sorted({**STAGE_ENVIRONMENT, **forwarded_environment()}.items()) for arg in ("-e", f"{key}={value}")],
            "--label", f"{ARTIFACTS_LABEL}={artifacts.resolve()}", "--label", f"{OWNER_LABEL}={os.getpid()}",
            "--mount", bind_mount(artifacts.resolve(), str(CONTAINER_ARTIFACTS)),
            "--mount", bind_mount(targets.resolve(), str(CONTAINER_TARGETS), read_only=True),
        ]
        for host_path, inside in sorted((read_only or {}).items()):
            argv += ["--mount", bind_mount(host_path.resolve(), inside, read_only=True)]
        if os.environ.get(testcoverage.ENV):  # `invoke test --coverage`: measure the code in here too
            argv += testcoverage.container_options(Path(os.environ[testcoverage.ENV]))
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        argv += [image, *args]

        def container_error(**kwargs: object) -> ContainerError:
            return ContainerError(image=image, **kwargs)  # type: ignore[arg-type]

        try:
            return self.runner.run(argv, step=step, error=container_error, capture=capture, timeout=timeout)
        finally:
            if not self.runner.dry_run:  # a dry run started nothing, so it removes nothing
                # A killed client (or one stopped at the time limit) leaves the container running; make sure it is gone.
                self.runner.succeeds([self.executable, "rm", "-f", name], timeout=self.timeout)

    def image_packages(self, image: str) -> List[str]:
        """The Python packages installed in ``image``, as sorted ``name==version`` lines (``pip list``)."""
        name = f"ds2ir-pip-list-{uuid.uuid4().hex[:8]}"
        try:
            listing = self.call(
                [self.executable, "run", "--rm", *engines.run_options(self.executable), "--name", name, "--network", "none",
                 "--entrypoint", "python", image, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                step="list image packages", capture=True, quiet=True)
        finally:
            if not self.runner.dry_run:  # past the time limit the client is killed, not its container
                self.runner.succeeds([self.executable, "rm", "-f", name], timeout=self.timeout)
        return sorted(line for line in listing.splitlines() if "==" in line)

    def remove_stray_containers(self, artifacts: Path) -> List[str]:
        """Remove the stage containers of ``artifacts`` whose starting process is gone; return their names.

        Killing a build (kill -9, a closed terminal) leaves its ``docker run`` client and
        container running, still writing into ``artifacts``. The caller holds the artifacts
        directory's lock, so such a container belongs to no live build of this directory.
        """
        listing = self.call(
            [self.executable, "ps", "-a", "--filter", f"label={ARTIFACTS_LABEL}={artifacts.resolve()}",
             "--format", "{{.Names}} " + engines.label_format(self.executable, OWNER_LABEL)],
            step="list stray containers", capture=True, quiet=True)
        stray = [name for name, _, owner in (line.partition(" ") for line in listing.splitlines())
                 if not _process_alive(owner)]
        for name in stray:
            self.call([self.executable, "rm", "-f", name], step="remove stray container", capture=True, quiet=True)
        return stray

    # -- compose -------------------------------------------------------------

    def compose_exit_codes(self, compose: Sequence[str], *, cwd: Path, env: Dict[str, str]) -> Dict[str, int]:
        """Exit code of each service's last container (`compose up` alone does not fail on them)."""
        codes = {}
        for service in ("freeze", "convert"):
            ids = self.call([*compose, "ps", "-q", service], step="compose ps", capture=True, quiet=True,
                            cwd=cwd, env=env).split()
            if not ids:
                codes[service] = -1  # never started (an earlier service failed)
                continue
            state = self.call([self.executable, "inspect", "--format", "{{.State.ExitCode}}", ids[0]],
                              step="inspect container", capture=True, quiet=True)
            codes[service] = int(state.strip())
        return codes

    def compose_command(self) -> List[str]:
        """``docker compose`` (v2) when available, else ``docker-compose`` (v1)."""
        if self.runner.succeeds([self.executable, "compose", "version"], timeout=self.timeout):
            return [self.executable, "compose"]
        if self.runner.succeeds(["docker-compose", "version"], timeout=self.timeout):
            return ["docker-compose"]
        raise DockerUnavailableError(
            "Neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed. Install one "
            "(on Debian: 'apt-get install docker-compose') or use 'invoke build', which needs neither."
        )


def default_timeout() -> float:
    """$DS2IR_DOCKER_TIMEOUT (seconds), else DEFAULT_TIMEOUT."""
    value = os.environ.get(TIMEOUT_ENV, "")
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {value!r}")
    return seconds


def _process_alive(pid: str) -> bool:
    """Whether the process ``pid`` (a label's text) exists on this host."""
    if not pid.strip().isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True



def image_inputs(spec: ImageSpec, project: Path) -> List[Path]:
    """The checkout's files an image is built from (its tag hashes them): Dockerfile, lock, constraints, package."""
    constraints = [project / spec.constraints] if spec.constraints else []
    return [project / spec.dockerfile, project / spec.lock, *constraints, *_package_files(project)]


def _package_files(project: Path) -> List[Path]:
    files: List[Path] = []
    for entry in PACKAGE_FILES:
        path = project / entry
        if path.is_file():
            files.append(path)
        else:
            files.extend(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                         and ".egg-info" not in str(p) and not p.is_relative_to(project / HOST_ONLY))
    return sorted(files)


def compose_environment(target: Target, base_images: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The variables docker-compose.yml reads, from a target (one source of truth):
    DS2IR_TARGET and each image's build args as ``<STAGE>_<ARG>``.

    ``base_images`` maps a public base image to the one to use (offline stand-ins).
    """
    base_images = base_images or {}
    env = {"DS2IR_TARGET": target.name}
    for spec in (target.freeze_image, target.convert_image):
        for key, value in spec.build_args(base_images.get(spec.base_image)).items():
            env[f"{spec.stage.upper()}_{key}"] = value
    return env


def render_env_file(target: Target) -> str:
    """The committed .env that plain `docker compose up` reads (regenerate: invoke compose-env)."""
    lines = ["# Generated from targets.toml by `invoke compose-env`; do not edit by hand."]
    lines += [f"{key}={check_text(value, what=key)}" for key, value in sorted(compose_environment(target).items())]
    return "\n".join(lines) + "\n"


def write_env_file(path: Path, target: Target) -> None:
    """Write ``render_env_file`` atomically: compose never reads a half-written .env."""
    atomic.write_bytes(path, render_env_file(target).encode("utf-8"))
