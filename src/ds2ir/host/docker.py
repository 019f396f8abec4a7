"""The container engine (Docker, or Podman through the same commands) as ds2ir drives it: preflight,
content-tagged images built from a context it is handed, throwaway containers, time limits.

It knows nothing of DeepSpeech or of ds2ir's stages: stage images (images.py) hand it a build
context, stage containers (launch.py) their mounts, environment and labels. All calls go through
:class:`ds2ir.runner.Runner`, so they are echoed and their failures carry the command, exit code
and the last lines of output.
"""
from __future__ import annotations

import contextlib
import copy
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, ContextManager, Iterator, List, Mapping, Optional, Sequence

from ds2ir.errors import (
    CommandError,
    CommandTimeoutError,
    ConfigError,
    ContainerError,
    DockerUnavailableError,
    MissingInputError,
    quote,
)
from ds2ir.host import digests, engines
from ds2ir.runner import Runner, StrPath

OFFLINE_PREFIX = "ds2ir-offline/"
# Containers carry the artifacts directory they write and the PID of the process that started
# them, so a build can find the ones a killed build left running (remove_stray_containers).
ARTIFACTS_LABEL = "ds2ir.artifacts"
OWNER_LABEL = "ds2ir.owner-pid"
# Every Docker call but a stage's own run (limited by the target's stage_time_limit) has a time
# limit, so a daemon that accepts connections but never answers fails clearly instead of hanging.
TIMEOUT_ENV = "DS2IR_DOCKER_TIMEOUT"
DEFAULT_TIMEOUT = 60.0  # version, inspect, ps, rm, listing an image's packages: seconds when healthy
BUILD_TIMEOUT = 3 * 3600.0  # docker build, pull, import: a cold image build downloads gigabytes


def offline_substitute(public_image: str) -> str:
    """The name `invoke base-images` gives its locally built stand-in for a public image."""
    return OFFLINE_PREFIX + public_image


@dataclass(frozen=True)
class BuildContext:
    """What an image is built from. ``files`` (under ``root``) and ``tag_inputs`` name its content tag;
    ``directory`` gives the directory sent to the engine (default: ``root`` itself), e.g. a generated one."""

    root: Path
    dockerfile: str  # relative to the directory sent
    files: Sequence[Path]
    tag_inputs: Sequence[bytes] = ()
    directory: Optional[Callable[[], ContextManager[Path]]] = None

    def content_digest(self, platform: str, build_args: Mapping[str, str]) -> str:
        parts = [f"platform={platform}\n".encode()]
        parts += [f"{key}={value}\n".encode() for key, value in sorted(build_args.items())]
        parts += [str(path.relative_to(self.root)).encode() + b"\0" + path.read_bytes() for path in self.files]
        return digests.sha256(*parts, *self.tag_inputs)

    @contextlib.contextmanager
    def open(self) -> Iterator[Path]:
        """The directory to send, for as long as the build runs."""
        if self.directory is None:
            yield self.root
        else:
            with self.directory() as directory:
                yield directory


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

    def call(self, argv: Sequence[StrPath], *, step: str, timeout: Optional[float] = None, **options: Any) -> str:
        """Run a Docker command that is not a stage's own run, within ``timeout`` (default: self.timeout).

        Past it, the command is killed and a DockerUnavailableError names the engine."""
        limit = self.timeout if timeout is None else timeout
        try:
            return self.runner.run(argv, step=step, timeout=limit, **options)  # Runner.run's keyword options
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
        except (CommandError, MissingInputError, OSError) as exc:  # no answer, no client, a client we may not run
            raise DockerUnavailableError(self._diagnose(str(exc))) from exc

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
        except CommandError:  # 'No such image' (a hung engine is a DockerUnavailableError, raised on)
            return None

    def image_size(self, ref: str) -> int:
        """The size of a local image in bytes (what `docker images` shows)."""
        return int(self.call([self.executable, "image", "inspect", "--format", "{{.Size}}", ref],
                             step="inspect image", capture=True, quiet=True).strip())

    def resolve_base_image(self, public_image: str) -> str:
        """The public base image, or its offline stand-in when one was built here."""
        substitute = offline_substitute(public_image)
        return substitute if self.image_id(substitute) else public_image

    def pull(self, image: str, *, platform: str) -> None:
        """Pull ``image`` for ``platform``; a CommandError carries the registry's answer."""
        self.call([self.executable, "pull", "--platform", platform, image], step=f"pull {image}", capture=True,
                  quiet=True, timeout=BUILD_TIMEOUT)
        self.runner.say(f"pulled base image {image}")

    @staticmethod
    def content_tag(name: str, context: BuildContext, *, platform: str, build_args: Mapping[str, str]) -> str:
        """``<name>:<12 hex digits>`` naming what the image is built from."""
        return f"{name}:{context.content_digest(platform, build_args)[:12]}"

    def build_image(self, context: BuildContext, tag: str, *, platform: str, build_args: Mapping[str, str],
                    no_cache: bool = False) -> None:
        """Build ``context`` as ``tag`` (legacy builder); ``no_cache`` rebuilds every layer (what a cold build costs)."""
        with context.open() as directory:
            argv: List[str] = [self.executable, "build", "--platform", platform, "-f", str(directory / context.dockerfile),
                               "-t", tag]
            argv += ["--no-cache"] if no_cache else []
            for key, value in sorted(build_args.items()):
                argv += ["--build-arg", f"{key}={value}"]
            self.call(argv + [str(directory)], step=f"build {tag}", env={"DOCKER_BUILDKIT": "0"}, timeout=BUILD_TIMEOUT)

    # -- containers ----------------------------------------------------------

    def run_container(self, *, step: str, image: str, args: Sequence[str], platform: str, mounts: Sequence[str] = (),
                      environment: Optional[Mapping[str, str]] = None, labels: Optional[Mapping[str, str]] = None,
                      user: Optional[str] = None, entrypoint: Optional[str] = None, options: Sequence[str] = (),
                      capture: bool = False, stdin: Optional[IO[bytes]] = None, timeout: Optional[float] = None) -> str:
        """Run ``image`` in a throwaway container without network; remove it afterwards whatever happens.

        ``mounts`` are ``--mount`` values, ``options`` any further ones, ``stdin`` what it reads. On failure a ContainerError carries the log tail; past
        ``timeout`` seconds the container is stopped and removed and a CommandTimeoutError says so.
        """
        name = f"ds2ir-{step.replace(' ', '-')}-{uuid.uuid4().hex[:8]}"
        argv: List[str] = [self.executable, "run", "--rm", "--platform", platform, *engines.run_options(self.executable),
                           "--name", name, "--network", "none"]
        argv += ["--user", user] if user else []
        argv += [arg for key, value in (environment or {}).items() for arg in ("-e", f"{key}={value}")]
        argv += [arg for key, value in (labels or {}).items() for arg in ("--label", f"{key}={value}")]
        argv += [arg for mount in mounts for arg in ("--mount", mount)]
        argv += list(options)
        argv += ["--entrypoint", entrypoint] if entrypoint else []
        argv += [image, *args]

        def container_error(**kwargs: Any) -> ContainerError:  # step, command, exit_code, log_tail: from the runner
            return ContainerError(image=image, **kwargs)

        try:
            return self.runner.run(argv, step=step, error=container_error, capture=capture, stdin=stdin, timeout=timeout)
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



