"""invoke tasks: thin wrappers over the ds2ir package. `invoke --list` shows them."""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator, Optional

from invoke import Context, Exit, task

from ds2ir import baseimages, build as builds, config
from ds2ir.docker import Docker, compose_environment, render_env_file
from ds2ir.errors import Ds2irError
from ds2ir.runner import Runner, quote

PROJECT = Path(__file__).resolve().parent
ARTIFACTS = PROJECT / "artifacts"

HELP = {
    "target": "target name from targets.toml (default: its default_target)",
    "artifacts": f"artifacts directory (default: {ARTIFACTS.relative_to(PROJECT)}/)",
    "force": "run every stage even when up to date",
    "dry_run": "print the commands without running them",
    "debug": "show Python tracebacks on errors",
}


def _help(*names: str) -> dict:
    return {name: HELP[name] for name in names}


BUILD_HELP = _help("target", "artifacts", "force", "dry_run", "debug")


@contextlib.contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Print ds2ir's one-paragraph errors without a traceback (unless --debug)."""
    try:
        yield
    except Ds2irError as exc:
        if debug:
            traceback.print_exc()
        raise Exit(f"ds2ir: error: {exc}", code=2)


def _builder(target: Optional[str], artifacts: Optional[str], force: bool = False, dry_run: bool = False) -> builds.Builder:
    docker = Docker(Runner(dry_run=dry_run))
    return builds.Builder(config.load_target(target), project=PROJECT, artifacts=Path(artifacts or ARTIFACTS).resolve(),
                          docker=docker, force=force)


def _build(target: Optional[str], artifacts: Optional[str], force: bool, dry_run: bool, debug: bool, until: str) -> None:
    with user_errors(debug):
        builder = _builder(target, artifacts, force, dry_run)
        timings = builder.build(until=until)
        ran = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()) or "nothing (all up to date)"
        print(f"[{builder.target.name}] ran: {ran}; outputs in {builder.layout.target_dir}")


@task(default=True, help=BUILD_HELP)
def build(c: Context, target: Optional[str] = None, artifacts: Optional[str] = None, force: bool = False,
          dry_run: bool = False, debug: bool = False) -> None:
    """Build the target end to end: checkpoint, freeze, convert, IR-vs-TF check (skips what is up to date)."""
    _build(target, artifacts, force, dry_run, debug, until="check")


@task(help=BUILD_HELP)
def freeze(c: Context, target: Optional[str] = None, artifacts: Optional[str] = None, force: bool = False,
           dry_run: bool = False, debug: bool = False) -> None:
    """Run the stages up to the frozen graph (artifacts/<target>/frozen/output_graph.pb)."""
    _build(target, artifacts, force, dry_run, debug, until="freeze")


@task(help=BUILD_HELP)
def convert(c: Context, target: Optional[str] = None, artifacts: Optional[str] = None, force: bool = False,
            dry_run: bool = False, debug: bool = False) -> None:
    """Run the stages up to the IR (artifacts/<target>/ir/output_graph.{xml,bin})."""
    _build(target, artifacts, force, dry_run, debug, until="convert")


@task(help=_help("target", "dry_run", "debug"))
def images(c: Context, target: Optional[str] = None, dry_run: bool = False, debug: bool = False) -> None:
    """Build the target's freeze and convert images (tagged by their content)."""
    with user_errors(debug):
        builder = _builder(target, None, dry_run=dry_run)
        builder.docker.preflight()
        for stage, tag in builder.images().items():
            print(f"{stage}: {tag}")


@task(help={"target": "a target to clean (repeatable; default: all)", "artifacts": HELP["artifacts"]}, iterable=["target"])
def clean(c: Context, target: Optional[list] = None, artifacts: Optional[str] = None) -> None:
    """Remove build outputs under artifacts/ (images stay; `docker image prune` removes those)."""
    for path in builds.clean(Path(artifacts or ARTIFACTS), target or []):
        print(f"removed {path}")


@task(name="base-images", help={
    "python_root": f"directory of relocatable CPython X.Y.Z builds (default: {baseimages.DEFAULT_PYTHON_ROOT})",
    "mirror": f"Debian mirror for debootstrap (default: {baseimages.DEFAULT_MIRROR})",
    "force": "rebuild images that exist",
    "if_missing": "build a stand-in only where the public image can be neither found nor pulled",
    "debug": HELP["debug"],
})
def base_images(c: Context, python_root: Optional[str] = None, mirror: Optional[str] = None, force: bool = False,
                if_missing: bool = False, debug: bool = False) -> None:
    """Build offline stand-ins for the targets' python base images (hosts that cannot pull)."""
    with user_errors(debug):
        docker = Docker(Runner())
        docker.preflight()
        targets = config.TargetsFile.load()
        public = [image.base_image for image in targets.images.values()]
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ds2ir" / "base-images"
        built = baseimages.build_offline_base_images(
            docker, public, python_root=Path(python_root or baseimages.DEFAULT_PYTHON_ROOT),
            mirror=mirror or baseimages.DEFAULT_MIRROR, cache=cache, force=force, if_missing=if_missing,
        )
        print("\n".join(built))


@task(help=_help("target", "debug"))
def compose(c: Context, target: Optional[str] = None, debug: bool = False) -> None:
    """Run the two services of docker-compose.yml for a target (v2 `docker compose` or v1 `docker-compose`)."""
    with user_errors(debug):
        docker = Docker(Runner())
        docker.preflight()
        chosen = config.load_target(target)
        public = (chosen.freeze_image.base_image, chosen.convert_image.base_image)
        env = compose_environment(chosen, {image: docker.resolve_base_image(image) for image in public})
        env.update(DS2IR_UID=str(os.getuid()), DS2IR_GID=str(os.getgid()))
        ARTIFACTS.mkdir(exist_ok=True)
        compose = docker.compose_command()
        docker.runner.run([*compose, "up", "--build"], step="compose up", env=env, cwd=PROJECT)
        codes = docker.compose_exit_codes(compose, cwd=PROJECT, env=env)
        failed = {service: code for service, code in codes.items() if code != 0}
        if failed:
            raise Exit(f"ds2ir: error: compose services failed (exit codes {failed}); their logs are above.", code=2)


@task(name="compose-env")
def compose_env(c: Context) -> None:
    """Regenerate .env (what plain `docker compose up` reads) from targets.toml's default target."""
    (PROJECT / ".env").write_text(render_env_file(config.load_target()))
    print(f"wrote {PROJECT / '.env'}")


@task(help={"unit": "run only the unit tests (no Docker)", "k": "pytest -k expression"})
def test(c: Context, unit: bool = False, k: Optional[str] = None) -> None:
    """Run the tests: unit tests, then end-to-end tests with real containers."""
    args = [sys.executable, "-m", "pytest", "tests/unit" if unit else "tests", "-ra"]
    if k:
        args += ["-k", k]
    c.run(quote(args), pty=False)
