"""Types are checked: mypy, strict as pyproject.toml configures it, passes over the package, and fails an ill-typed module."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]

ILL_TYPED = '''"""A host module as it must not be written."""
from ds2ir.errors import ConfigError


def unannotated(value):
    return value


def wrong() -> int:
    return ConfigError("not a number")


def silenced() -> str:
    return 1  # type: ignore
'''


def mypy(project: Path, *files: str) -> subprocess.CompletedProcess:
    """mypy as CI runs it: its configuration from ``project``'s pyproject.toml, its cache under the project."""
    return subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", *files], cwd=str(project),
                          env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)


def test_the_package_type_checks_strictly() -> None:
    result = mypy(PROJECT)
    assert result.returncode == 0, result.stdout


def test_an_ill_typed_host_module_fails_the_check(tmp_path: Path) -> None:
    shutil.copy(str(PROJECT / "pyproject.toml"), str(tmp_path / "pyproject.toml"))
    shutil.copytree(str(PROJECT / "src"), str(tmp_path / "src"), ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (tmp_path / "src/ds2ir/host/ill_typed.py").write_text(ILL_TYPED)
    result = mypy(tmp_path, "src/ds2ir/host/ill_typed.py")  # the module and what it imports: quick
    errors = set(re.findall(r"^src/ds2ir/host/ill_typed\.py:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.M))
    assert result.returncode == 1 and errors == {("5", "no-untyped-def"), ("10", "return-value"),
                                                 ("14", "ignore-without-code")}, result.stdout
