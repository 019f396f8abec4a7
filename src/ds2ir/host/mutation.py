"""Mutation testing of the modules that gate correctness and safety (`invoke mutate`), with mutmut.

mutmut changes one thing at a time in a module (an operator, a constant, a condition) and
runs the fast unit tests that cover it; a mutant no test notices "survives". It runs in a
private copy of the checkout, so the checkout never holds mutated code or mutmut's files.
Scores and the surviving mutants judged equivalent are recorded in docs/testing.md.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

from ds2ir.errors import ConfigError

#: the modules whose mistakes let a wrong IR or a damaged file through: where each is, what it gates, its fast tests
GATE_MODULES = {
    "verify": ("model/verify", "the IR-vs-TF tolerance", ["tests/unit/test_verify.py", "tests/unit/test_tolerance.py",
                                                          "tests/unit/test_verify_report.py"]),
    "build": ("host/build", "running the stages that are stale", ["tests/unit/test_staleness.py", "tests/unit/test_build.py",
                                                                  "tests/unit/test_faults_storage.py", "tests/unit/test_errors.py"]),
    "stamps": ("host/stamps", "stamps and staleness", ["tests/unit/test_stamps.py", "tests/unit/test_staleness.py",
                                                       "tests/unit/test_faults_storage.py"]),
    "docker": ("host/docker", "content tags of the stage images", ["tests/unit/test_content_tags.py",
                                                                   "tests/unit/test_docker_commands.py",
                                                                   "tests/unit/test_docker.py", "tests/unit/test_locks.py"]),
    "atomic": ("atomic", "atomic writes", ["tests/unit/test_atomic.py", "tests/unit/test_atomic_readers.py",
                                           "tests/unit/test_atomic_durability.py", "tests/unit/test_faults_storage.py"]),
    "archive": ("host/archive", "archive checks", ["tests/unit/test_archive.py", "tests/unit/test_archive_pax.py",
                                                   "tests/unit/test_faults_fetch.py"]),
    "fetch": ("host/fetch", "download verification", ["tests/unit/test_fetch.py", "tests/unit/test_faults_fetch.py"]),
    "assets_lock": ("host/assets_lock", "the assets lock's pins", ["tests/unit/test_fetch.py"]),
    "config": ("model/targets_file", "targets.toml validation", ["tests/unit/test_config.py",
                                                                 "tests/unit/test_faults_config.py",
                                                                 "tests/unit/test_locks.py"]),
}
#: what the copy of the checkout leaves out (build outputs, caches, version control)
NOT_COPIED = ("artifacts", "mutants", ".git", ".coverage-run", ".pytest_cache", ".mypy_cache", "__pycache__", "*.egg-info")


def settings(modules: Sequence[str], tests: Sequence[str], also_copy: Sequence[str]) -> str:
    """mutmut's [tool.mutmut] table: mutate only ``modules``, test with ``tests``."""
    return "\n".join([
        "", "[tool.mutmut]", 'source_paths = ["src/"]',
        "only_mutate = [" + ", ".join(f'"src/ds2ir/{GATE_MODULES[name][0]}.py"' for name in modules) + "]",
        "pytest_add_cli_args_test_selection = [" + ", ".join(f'"{path}"' for path in tests) + "]",
        "also_copy = [" + ", ".join(f'"{name}"' for name in also_copy) + "]",
        'pytest_add_cli_args = ["-p", "no:cacheprovider"]', "",
    ])


#: mutmut's outcomes of a mutant that ran (the rest of "total" were not run: skipped or filtered out)
JUDGED = ("killed", "timeout", "survived", "no_tests", "suspicious", "segfault")


def score(stats: Dict[str, int]) -> float:
    """Share of the mutants run that the tests kill (a timeout counts as killed; untested ones as survivors)."""
    judged = sum(stats.get(outcome, 0) for outcome in JUDGED)
    return (stats["killed"] + stats.get("timeout", 0)) / judged if judged else 1.0


def run(project: Path, modules: Sequence[str], tests: Sequence[str] = (), only: Sequence[str] = ()) -> Dict[str, object]:
    """Run mutmut over ``modules`` in a copy of ``project``, judged by ``tests`` (default: the modules'
    fast unit tests, GATE_MODULES); ``only``: mutant name patterns (``ds2ir.model.verify.x_within*``) to run,
    not all. Return the counts, the score and the mutants not killed."""
    unknown = sorted(set(modules) - set(GATE_MODULES))
    if unknown:
        raise ConfigError(f"invoke mutate: unknown module(s) {', '.join(unknown)}; choose from {', '.join(GATE_MODULES)}.")
    tests = list(tests) or sorted({path for name in modules for path in GATE_MODULES[name][2]})
    with tempfile.TemporaryDirectory(prefix="ds2ir-mutate-") as scratch:
        copy = Path(scratch) / "checkout"
        shutil.copytree(str(project), str(copy), ignore=shutil.ignore_patterns(*NOT_COPIED))
        with open(copy / "pyproject.toml", "a") as handle:
            handle.write(settings(modules, tests, sorted(p.name for p in copy.iterdir() if p.name not in ("src", "tests"))))
        mutmut = [sys.executable, "-m", "mutmut"]
        # Tests that start Python subprocesses (invoke tasks) import the mutated package too. The
        # directory exists before Python starts, or its import machinery caches it as absent.
        (copy / "mutants" / "src").mkdir(parents=True)
        env = dict(os.environ, PYTHONPATH=str(copy / "mutants" / "src"))
        subprocess.run(mutmut + ["run", *only], cwd=str(copy), env=env, check=False, stdout=subprocess.DEVNULL)
        subprocess.run(mutmut + ["export-cicd-stats"], cwd=str(copy), check=True, stdout=subprocess.DEVNULL)
        stats = json.loads((copy / "mutants" / "mutmut-cicd-stats.json").read_text())
        listed = subprocess.run(mutmut + ["results"], cwd=str(copy), check=True, stdout=subprocess.PIPE,
                                universal_newlines=True).stdout
    survivors: List[str] = sorted(line.strip() for line in listed.splitlines()
                                  if line.strip() and not line.strip().endswith(": not checked"))
    return {"modules": list(modules), "stats": stats, "score": round(score(stats), 4), "survivors": survivors}
