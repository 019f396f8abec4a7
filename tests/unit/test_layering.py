"""The layout is the architecture: import-linter's contracts (pyproject.toml) hold, and a broken one fails."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())"], cwd=str(project), env={"PYTHONPATH": str(project / "src"),
                           "PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def test_the_layers_hold() -> None:
    result = lint_imports(PROJECT)
    assert result.returncode == 0 and "KEPT" in result.stdout and "BROKEN" not in result.stdout, result.stdout


def lint_imports_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the package whose ``module`` (a path under src/ds2ir) gains ``line``."""
    shutil.copy(str(PROJECT / "pyproject.toml"), str(tmp_path / "pyproject.toml"))
    shutil.copytree(str(PROJECT / "src"), str(tmp_path / "src"), ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with open(tmp_path / "src" / "ds2ir" / module, "a") as handle:
        handle.write(f"\n{line}  # noqa\n")
    return lint_imports(tmp_path)


def test_stage_code_importing_host_code_breaks_the_build(tmp_path: Path) -> None:
    result = lint_imports_with(tmp_path, "model/verify.py", "from ds2ir.host import matrix")
    assert result.returncode != 0
    assert "Nothing that enters an image imports host code BROKEN" in result.stdout
    assert "ds2ir.model.verify -> ds2ir.host.matrix" in result.stdout


def test_the_engine_wrapper_importing_deepspeech_code_breaks_the_build(tmp_path: Path) -> None:
    result = lint_imports_with(tmp_path, "host/docker.py", "from ds2ir.host import upstream")
    assert result.returncode != 0
    assert "The container engine wrapper knows nothing of DeepSpeech" in result.stdout and "BROKEN" in result.stdout
