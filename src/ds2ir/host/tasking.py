"""What every invoke task needs: option help, the project, dry runs, one-paragraph errors, the chosen
variants and their builders. tasks.py keeps only the tasks themselves."""
from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

from invoke.context import Context
from invoke.exceptions import Exit

from ds2ir.errors import ConfigError, Ds2irError
from ds2ir.host import baseimages, mutation
from ds2ir.host import build as builds
from ds2ir.host.docker import Docker
from ds2ir.host.project import Project
from ds2ir.model.targets import Target
from ds2ir.model.targets_file import TargetsFile
from ds2ir.model.variants import VARIANT_SEPARATOR
from ds2ir.runner import Runner

HELP = {
    "target": "target name from targets.toml (default: its default_target)",
    "artifacts": "artifacts directory (default: artifacts/, or ds2ir.artifacts in invoke.yaml)",
    "force": "run every stage even when up to date",
    "dry_run": "print the commands without running them (as invoke's own --dry does)",
    "debug": "show Python tracebacks on errors",
    "check": "rebuild every stage and fail unless the outputs match outputs.lock.json bit for bit",
    "offline": "never touch the network: release assets must be in the cache (see `invoke fetch --import`)",
    "trust_on_first_use": "accept and record in assets.lock.toml the digest of an asset the lock does not know",
    "model": "your own memory-mapped model (.pbmm) for a target with checkpoint = \"pbmm\" (e.g. deepspeech-0.8.2-pbmm)",
    "variant": "one of the target's variants (its `variants` in targets.toml, e.g. int8; default: the target's own)",
    "all_variants": "the target's default variant, then each of its other variants (docs/variants.md)",
}


def help_for(*names: str) -> Dict[str, str]:
    return {name: HELP[name] for name in names}


BUILD_HELP = help_for("target", "variant", "artifacts", "force", "dry_run", "debug", "offline", "trust_on_first_use")
#: the options of the tasks that have their own
TASK_HELP: Dict[str, Dict[str, str]] = {
    "base-images": {
        "python_root": f"directory of relocatable CPython X.Y.Z builds (default: {baseimages.DEFAULT_PYTHON_ROOT})",
        "mirror": f"Debian mirror for debootstrap (default: {baseimages.DEFAULT_MIRROR})",
        "force": "rebuild images that exist",
        "if_missing": "build a stand-in only where the public image can be neither found nor pulled",
        "debug": HELP["debug"],
    },
    "matrix": {
        "targets": "a target to build, or TARGET@VARIANT (repeatable; default: `matrix` in targets.toml)",
        "all_variants": "each target's every variant, a cell each",
        "list_": "print the cells instead of building them", "format_": "of --list: text or github",
        "check": "also fail a cell whose outputs differ from outputs.lock.json (where locked)",
        "jobs": "cells built side by side (default 1); each logs to matrix/logs/<target>.log",
        **help_for("artifacts", "force", "debug"),
    },
    "ci-local": {
        "workflow": "the workflow file in .github/workflows (default: reproduce.yml)",
        "job": "run only this job (default: every job of the workflow for the event)",
        "event": "the event that triggers the run (default: push)",
        "input_": "a workflow_dispatch input as NAME=VALUE (repeatable)",
        "log": "where act's whole output goes (default: artifacts/ci/<workflow>.log)", "lint_only": "only lint the workflows",
        "runner_artifacts": "an artifacts directory kept between runs, as a self-hosted runner's (matrix.yml builds there)",
        "debug": HELP["debug"],
    },
    "mutate": {
        "module": f"a module to mutate (repeatable; default: all of {', '.join(mutation.GATE_MODULES)})",
        "tests": "a test file or directory that judges the mutants (repeatable; default: each module's fast unit tests)",
        "only": "run only the mutants matching this name pattern, e.g. 'ds2ir.model.verify.x_within*' (repeatable)",
    },
}


@contextlib.contextmanager
def user_errors(debug: bool) -> Iterator[None]:
    """Print ds2ir's one-paragraph errors without a traceback (unless --debug)."""
    try:
        yield
    except Ds2irError as exc:
        if debug:
            traceback.print_exc()
        raise Exit(f"ds2ir: error: {exc}", code=2)


def project_of(c: Context, checkout: Path, artifacts: Optional[str] = None) -> Project:
    """The checkout's files: invoke's ``ds2ir`` settings (invoke.yaml beside tasks.py) under the DS2IR_*
    variables; ``artifacts``: a task's --artifacts."""
    project = Project.of_checkout(checkout, dict(c.config.get("ds2ir", {})))
    return project.with_artifacts(Path(artifacts) if artifacts else None)


def is_dry(c: Context, dry_run: bool = False) -> bool:
    """A dry run: the task's --dry-run, or invoke's own --dry (``run.dry``)."""
    return dry_run or bool(c.config.run.dry)


def refuse_dry(c: Context, task: str, instead: str) -> None:
    """invoke --dry on a task without a dry run: stop before anything runs instead of running it for real."""
    if c.config.run.dry:
        raise Exit(f"ds2ir: error: 'invoke {task}' has no dry run, so 'invoke --dry {task}' ran nothing; {instead}", code=2)


def chosen_variants(project: Project, target: Optional[str], variant: Optional[str] = None,
                    all_variants: bool = False) -> List[Target]:
    """The target as chosen: its default variant, the one --variant names, or (--all-variants) each of them."""
    targets = project.targets_file()
    chosen = targets.target(target)
    if all_variants and variant:
        raise ConfigError("--variant and --all-variants exclude each other; pass one of them.")
    names = chosen.variants if all_variants else [variant] if variant else []
    return variants_of(targets, chosen, names) or [chosen]


def variants_of(targets: TargetsFile, chosen: Target, names: Sequence[str]) -> List[Target]:
    """The named variants of ``chosen`` (``TARGET@VARIANT``), as the targets file defines them."""
    return [targets.target(f"{chosen.name}{VARIANT_SEPARATOR}{name}") for name in names]


def builder_of(project: Project, target: Optional[str], force: bool = False, dry_run: bool = False,
               offline: bool = False, trust_on_first_use: bool = False, model: Optional[str] = None,
               variant: Optional[str] = None, chosen: Optional[Target] = None) -> builds.Builder:
    """A Builder of the target (of its ``variant``, or of ``chosen``, one of its variants)."""
    docker = Docker.from_environment(Runner(dry_run=dry_run))
    return builds.Builder(chosen or chosen_variants(project, target, variant)[0], project=project, docker=docker, force=force,
                          offline=offline, trust_on_first_use=trust_on_first_use,
                          model=Path(model).resolve() if model else None)


def build_variants(c: Context, checkout: Path, target: Optional[str], artifacts: Optional[str], force: bool,
                   dry_run: bool, debug: bool, until: str, offline: bool = False, trust_on_first_use: bool = False,
                   model: Optional[str] = None, variant: Optional[str] = None,
                   all_variants: bool = False) -> List[builds.Builder]:
    """Build the chosen variants one after another: the stages they share run once (their stamps are shared)."""
    with user_errors(debug):
        project = project_of(c, checkout, artifacts)
        builders = builds.share_runs([builder_of(project, target, force, dry_run, offline, trust_on_first_use, model,
                                                 chosen=chosen) for chosen in chosen_variants(project, target, variant, all_variants)])
        for builder in builders:
            timings = builder.build(until=until)
            ran = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()) or "nothing (all up to date)"
            print(f"[{builder.target.label}] ran: {ran}; outputs in {builder.layout.variant_dir}")
        return list(builders)



def number_option(option: str, value: Optional[str]) -> Optional[float]:
    """An optional number option: invoke passes options without a typed default as text."""
    try:
        return None if value is None else float(value)
    except ValueError as exc:
        raise ConfigError(f"--{option} must be a number, got '{value}'") from exc
