"""Which container engine ds2ir drives, and the few places where Docker and Podman differ.

Both take the same ``build``, ``run``, ``image``, ``ps``, ``rm``, ``save``/``load`` and ``import``
command lines, so :class:`ds2ir.host.docker.Docker` drives either through its ``executable``. The
differences are named here, each with the reason it exists:

- the engine's own platform: ``docker version`` has ``.Server.Arch``; Podman's ``version`` has no
  server architecture, ``podman info`` has ``.Host.Arch``;
- one label of a container in ``ps --format``: Docker's ``.Label "k"``, Podman's ``index .Labels "k"``;
- resource limits of a container: rootful Podman 4 sets RLIMIT_NOFILE (1048576) and RLIMIT_NPROC
  of every container itself, which a host whose own limits are lower refuses ("error setting rlimit
  type 7: operation not permitted", measured with Debian's podman 4.3); Docker's containers inherit
  the daemon's. ds2ir pins both to what this process has (processes capped at ``pid_max``, above
  which the kernel refused them too).
"""
from __future__ import annotations

import csv
import io
import os
import resource
import shutil
from pathlib import Path
from typing import Callable, List, Mapping, Optional

from ds2ir.errors import ConfigError
from ds2ir.paths import check_text

ENGINE_ENV = "DS2IR_ENGINE"
ENGINES = ("docker", "podman")
PID_MAX = Path("/proc/sys/kernel/pid_max")


def choose_executable(env: Mapping[str, str] = os.environ,
                      which: Callable[[str], Optional[str]] = shutil.which) -> str:
    """$DS2IR_ENGINE (docker or podman, or a path to either), else docker, else podman when only it is installed."""
    chosen = env.get(ENGINE_ENV, "").strip()
    if chosen:
        if Path(chosen).name not in ENGINES:
            raise ConfigError(f"{ENGINE_ENV}={chosen!r} is not a container engine ds2ir drives: set it to docker or "
                              f"podman (or a path to one of them), or unset it to use docker.")
        return chosen
    if which("docker") is None and which("podman") is not None:
        return "podman"
    return "docker"  # when neither is installed, the preflight says how to install Docker


def is_podman(executable: str) -> bool:
    return Path(executable).name == "podman"


def platform_query(executable: str) -> List[str]:
    """The command printing the engine's own platform as ``os/arch``."""
    if is_podman(executable):
        return [executable, "info", "--format", "{{.Host.OS}}/{{.Host.Arch}}"]
    return [executable, "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}"]


def label_format(executable: str, label: str) -> str:
    """The ``ps --format`` expression printing one label of a container."""
    if is_podman(executable):
        return f'{{{{index .Labels "{label}"}}}}'
    return f'{{{{.Label "{label}"}}}}'


def run_options(executable: str) -> List[str]:
    """Options every stage container of this engine needs beyond the common ones."""
    if not is_podman(executable):
        return []
    files = _hard_limit(resource.RLIMIT_NOFILE, cap=1 << 20)
    processes = _hard_limit(resource.RLIMIT_NPROC, cap=_pid_max())
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", f"nproc={processes}:{processes}"]


def _hard_limit(kind: int, *, cap: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


def _pid_max() -> int:
    try:
        return int(PID_MAX.read_text())
    except (OSError, ValueError):
        return 32768  # the kernel's default


def bind_mount(source: Path, target: str, *, read_only: bool = False) -> str:
    """A ``--mount`` value binding ``source`` at ``target``: a CSV line, as Docker parses it, so a path
    with ',' or ':' (which ``-v`` splits on) or '"' is one quoted field; control characters are refused."""
    fields = ["type=bind", f"source={check_text(str(source), what='a path to mount')}", f"target={target}"]
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(fields + (["readonly"] if read_only else []))
    return line.getvalue()
