"""docker-compose.yml's side of ds2ir: the variables it reads (one source of truth: targets.toml), the
committed .env, and the exit codes `compose up` does not report."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

from ds2ir import atomic
from ds2ir.host.docker import Docker
from ds2ir.model.targets import Target
from ds2ir.paths import check_text


def exit_codes(docker: Docker, compose: Sequence[str], *, cwd: Path, env: Dict[str, str]) -> Dict[str, int]:
    """Exit code of each service's last container (`compose up` alone does not fail on them)."""
    codes = {}
    for service in ("freeze", "convert"):
        ids = docker.call([*compose, "ps", "-q", service], step="compose ps", capture=True, quiet=True,
                          cwd=cwd, env=env).split()
        if not ids:
            codes[service] = -1  # never started (an earlier service failed)
            continue
        state = docker.call([docker.executable, "inspect", "--format", "{{.State.ExitCode}}", ids[0]],
                            step="inspect container", capture=True, quiet=True)
        codes[service] = int(state.strip())
    return codes


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
