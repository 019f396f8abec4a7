"""Where stage containers find the artifacts: bind-mounted from the host when the engine sees the host's
filesystem, else a named volume per artifacts root that ds2ir fills and empties (a remote engine,
``DOCKER_HOST=ssh://...``; measured with a second dockerd that cannot see the checkout).

With a volume, before each stage run the target's directory (and the root directories bench and
matrix write) is sent in as a tar stream through a helper container, read-only inputs (the
checkpoint, the targets file, a recording) go into read-only volumes of their own, and after the
run the directories come back with ``docker cp`` into temporaries beside their final names and are
swapped in whole (as atomic.atomic_dir swaps). The host keeps the stamps, the lock and the output hashes, so
every promise of a local build holds.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Collection, Dict, List, Mapping, Optional, Sequence, Tuple

from ds2ir import atomic
from ds2ir.errors import ConfigError, ContainerError
from ds2ir.host import digests
from ds2ir.host.docker import Docker
from ds2ir.host.engines import bind_mount

STORAGE_ENV = "DS2IR_ARTIFACTS_STORAGE"
STORAGES = ("bind", "volume")
PROBE_PREFIX = ".ds2ir-probe-"
# What never travels: the host's lock files, caches and stamps, and temporaries of interrupted writes.
HOST_ONLY = (".locks", ".cache", ".stamps")
_decided: Dict[Tuple[str, str], str] = {}


def volume_mount(volume: str, target: str, *, read_only: bool = False) -> str:
    return f"type=volume,source={volume},target={target}" + (",readonly" if read_only else "")


def artifacts_volume(artifacts: Path) -> str:
    """The named volume that stands for ``artifacts`` on an engine that cannot see it."""
    where = f"{os.uname().nodename}\0{artifacts.resolve()}".encode()
    return f"ds2ir-artifacts-{digests.sha256(where)[:12]}"


def default_engine() -> bool:
    """Whether the client talks to the local default socket (no DOCKER_HOST, DOCKER_CONTEXT, CONTAINER_HOST or
    other current context), which sees this host's files: then no probe is needed."""
    if any(os.environ.get(name) for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "CONTAINER_HOST")):
        return False
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    try:
        return bool(json.loads(config.read_text()).get("currentContext", "default") == "default")
    except (OSError, ValueError, AttributeError):
        return True


def forced_storage() -> Optional[str]:
    """$DS2IR_ARTIFACTS_STORAGE when set: "bind" or "volume" (anything else is refused), else None."""
    forced = os.environ.get(STORAGE_ENV, "").strip()
    if forced and forced not in STORAGES:
        raise ConfigError(f"{STORAGE_ENV}={forced!r} is not a way to reach the artifacts: set it to bind (the "
                          f"engine sees this host's files) or volume (copy them through a named volume), or unset it.")
    return forced or None


def describe(docker: Docker, artifacts: Path) -> str:
    """Where stage containers will find ``artifacts``, as `invoke doctor` says it, without starting a container."""
    forced = forced_storage()
    volume = f"named volume {artifacts_volume(artifacts)} (inputs copied in, outputs copied out around each stage)"
    if forced:
        return f"{volume if forced == 'volume' else f'bind mounts of {artifacts}'}: {STORAGE_ENV}={forced}"
    if default_engine():
        return f"bind mounts of {artifacts}: the engine is the local default ({docker.engine()}), which sees this host's files"
    return (f"decided at the first stage: the engine ({docker.engine()}) is not the local default, so a container "
            f"looks for a probe file in {artifacts}; bind mounts if it sees it, else the {volume}")


def choose(docker: Docker, artifacts: Path, image: str, platform: str) -> str:
    """"bind" or "volume": $DS2IR_ARTIFACTS_STORAGE, else for an engine other than the local default whether
    a container sees a probe file written here."""
    forced = forced_storage()
    if forced:
        return forced
    if docker.runner.dry_run or default_engine():
        return "bind"
    key = (docker.engine(), str(artifacts.resolve()))
    if key not in _decided:
        probe = artifacts / f"{PROBE_PREFIX}{secrets.token_hex(8)}"
        artifacts.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        try:
            docker.run_container(step="artifacts probe", image=image, platform=platform, entrypoint="sh",
                                 args=["-c", f"test -f /artifacts/{probe.name}"], capture=True,
                                 mounts=[bind_mount(artifacts.resolve(), "/artifacts", read_only=True)])
            _decided[key] = "bind"
        except ContainerError:  # no such file, or no such source directory on the engine's host
            _decided[key] = "volume"
            docker.runner.say(f"the engine ({docker.engine()}) does not see {artifacts}: stages work on volume "
                              f"{artifacts_volume(artifacts)}, inputs copied in and outputs out ({STORAGE_ENV}=bind forces mounts)")
        finally:
            probe.unlink()
    return _decided[key]


class VolumeRun:
    """One stage run over a volume: fill it, mount it, bring the results back."""

    def __init__(self, docker: Docker, *, artifacts: Path, image: str, platform: str, scope: Sequence[str]):
        self.docker = docker
        self.artifacts = artifacts
        self.volume = artifacts_volume(artifacts)
        self.image = image
        self.platform = platform
        self.scope = [name for name in scope if name]
        self._read_only: List[str] = []
        #: host paths mounted read-only from volumes of their own: never copied in, never brought back
        self._skip: Collection[Path] = ()

    def mounts(self, targets: Tuple[Path, str], read_only: Mapping[Path, str]) -> List[str]:
        """Send the scope in, each read-only input into a read-only volume; return the stage's --mount values."""
        self._skip = {path.resolve() for path in read_only}
        self._send(self.volume, {self.artifacts / name: name for name in self.scope if (self.artifacts / name).exists()},
                   skip=self._skip, replace=self.scope, owner=f"{os.getuid()}:{os.getgid()}")
        mounts = [volume_mount(self.volume, "/artifacts")]
        entries = sorted([targets, *read_only.items()])
        directories = {inside for host_path, inside in entries if host_path.is_dir()}
        parents = {inside.rpartition("/")[0] for host_path, inside in entries if not host_path.is_dir()}
        # files share a volume at the outermost of their directories (a read-only volume takes no mountpoint)
        roots = {parent for parent in parents if not any(parent.startswith(other + "/") for other in parents)}
        groups: Dict[str, Dict[Path, str]] = {inside: {} for inside in directories | roots}
        for host_path, inside in entries:
            if host_path.is_dir():
                groups[inside][host_path] = "."
            else:
                root = next(root for root in roots if inside.startswith(root + "/"))
                groups[root][host_path] = inside[len(root) + 1:]
        for inside, files in sorted(groups.items()):
            volume = f"ds2ir-input-{uuid.uuid4().hex[:12]}"
            self._read_only.append(volume)
            self._send(volume, files)
            mounts.append(volume_mount(volume, inside, read_only=True))
        return mounts

    def bring_back(self) -> None:
        """Copy the scope out of the volume beside its final names, then swap each top-level entry in."""
        helper = f"ds2ir-copy-{uuid.uuid4().hex[:8]}"
        self.docker.call([self.docker.executable, "create", "--name", helper, "--network", "none", "--mount",
                          volume_mount(self.volume, "/artifacts"), self.image], step="copy helper", capture=True, quiet=True)
        try:
            for name in self.scope:
                incoming = Path(tempfile.mkdtemp(prefix=f".{name}{atomic.TEMP_MARK}", dir=str(self.artifacts)))
                try:
                    self.docker.call([self.docker.executable, "cp", f"{helper}:/artifacts/{name}/.", str(incoming)],
                                     step="copy outputs out", capture=True, quiet=True)
                    self._publish(incoming, self.artifacts / name)
                finally:
                    shutil.rmtree(incoming, ignore_errors=True)
        finally:
            self.docker.runner.succeeds([self.docker.executable, "rm", "-f", helper], timeout=self.docker.timeout)

    def close(self) -> None:
        """Remove the run's read-only volumes (the artifacts volume stays: it is the engine's copy)."""
        for volume in self._read_only:
            self.docker.runner.succeeds([self.docker.executable, "volume", "rm", "-f", volume], timeout=self.docker.timeout)

    def _publish(self, incoming: Path, final: Path) -> None:
        final.mkdir(parents=True, exist_ok=True)
        for entry in sorted(incoming.iterdir()):
            target = final / entry.name
            if entry.name in HOST_ONLY or atomic.TEMP_MARK in entry.name or target.resolve() in self._skip:
                continue  # the read-only inputs' mountpoints come back empty
            if entry.is_dir() and target.is_dir() and _same_tree(entry, target):
                continue  # unchanged (e.g. the read-only checkpoint): keep its mtimes
            if entry.is_file() and target.is_file() and entry.read_bytes() == target.read_bytes():
                continue
            staged = final / f".{entry.name}{atomic.TEMP_MARK}{uuid.uuid4().hex[:8]}"
            os.rename(str(entry), str(staged))
            _publish(staged, target)

    def _send(self, volume: str, sources: Mapping[Path, str], *, skip: Collection[Path] = (), replace: Sequence[str] = (),
              owner: Optional[str] = None) -> None:
        """Tar ``sources`` (host path -> name in the volume) into ``volume`` through a helper container."""
        with tempfile.TemporaryFile() as stream:
            with tarfile.open(fileobj=stream, mode="w") as tar:
                for path, name in sources.items():
                    tar.add(str(path), arcname=name, filter=lambda info: _keep(info, path, name, skip))
            stream.seek(0)
            script = "".join(f"rm -rf '/v/{name}' && " for name in replace) + "tar -x -C /v -f -"
            script += f" && chown -R {owner} /v" if owner else ""
            self.docker.run_container(step="copy inputs in", image=self.image, platform=self.platform, entrypoint="sh",
                                      args=["-c", script], user="0:0", mounts=[volume_mount(volume, "/v")],
                                      options=["-i"], stdin=stream)


def _keep(info: tarfile.TarInfo, root: Path, name: str, skip: Collection[Path]) -> Optional[tarfile.TarInfo]:
    """Leave out what the host keeps to itself, temporaries and the inputs mounted read-only instead."""
    parts, base = Path(info.name).parts, Path(name).parts
    relative = Path(*parts[len(base):])
    if any(part in HOST_ONLY or atomic.TEMP_MARK in part for part in relative.parts):
        return None
    if (root / relative).resolve() in skip:
        return None
    return info


def _publish(new: Path, final: Path) -> None:
    """Put the complete file or tree ``new`` (a temporary beside ``final``) under the name ``final`` in one
    rename or exchange, as atomic.atomic_dir does, and remove what it replaced. (Here, not in atomic.py:
    that module enters the images, and host-only code must not change their content tags.)"""
    if new.is_dir() and final.is_dir() and not final.is_symlink():
        atomic._swap(new, final)  # now new holds the old tree
        shutil.rmtree(new, ignore_errors=True)
    else:
        os.replace(str(new), str(final))


def _same_tree(a: Path, b: Path) -> bool:
    def listing(root: Path) -> Dict[str, str]:
        return {str(p.relative_to(root)): digests.file_sha256(p) for p in root.rglob("*") if p.is_file()}
    return listing(a) == listing(b)
