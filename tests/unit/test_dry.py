"""invoke's own --dry (``run.dry``) is honoured: a task with a dry run does it, any other refuses before
it runs anything (a fake `docker` on PATH records what would reach the engine)."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Dict

import pytest

from ds2ir.host import build
from tests._support import fake_docker
from tests._support.checkout import CHECKOUT
from tests.e2e.helpers import invoke


@pytest.fixture
def env(tmp_path: Path) -> Dict[str, str]:
    return {"DS2IR_CACHE": str(tmp_path / "cache"), **fake_docker.install(tmp_path / "docker")}


def _dry(*args: str, env: Dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    return invoke("--dry", *args, env=env, check=check)


def test_dry_build_is_a_dry_run(tmp_path: Path, env: Dict[str, str]) -> None:
    artifacts = tmp_path / "artifacts"
    output = _dry("build", "--target", "synthetic-small", "--artifacts", str(artifacts), env=env).stdout
    assert "(dry run)" in output and "docker run" in output
    assert not artifacts.exists() and not (tmp_path / "cache").exists()
    assert [call for call in fake_docker.calls(tmp_path / "docker") if call[0] in fake_docker.MUTATING] == []


def test_dry_clean_says_what_it_would_remove_and_removes_nothing(tmp_path: Path, env: Dict[str, str]) -> None:
    built = tmp_path / "artifacts" / "synthetic-small"
    built.mkdir(parents=True)
    (built / build.TARGET_MARK).write_text("synthetic-small\n")
    output = _dry("clean", "--artifacts", str(tmp_path / "artifacts"), env=env).stdout
    assert output == f"(dry run) would remove {built}\n" and (built / build.TARGET_MARK).is_file()


def test_dry_fetch_and_compose_env_print_what_they_would_write(tmp_path: Path, env: Dict[str, str]) -> None:
    env_file = CHECKOUT / ".env"
    before = env_file.read_bytes() if env_file.is_file() else None
    fetched = _dry("fetch", "--target", "deepspeech-0.8.2", env=env).stdout
    assert fetched.startswith("(dry run) would fetch https://") and str(tmp_path / "cache") in fetched
    composed = _dry("compose-env", env=env).stdout
    assert composed.startswith(f"(dry run) would write {CHECKOUT / '.env'}:\n") and "DS2IR_TARGET=" in composed
    assert not (tmp_path / "cache").exists() and (env_file.read_bytes() if env_file.is_file() else None) == before


@pytest.mark.parametrize("args", [("verify", "--target", "synthetic-small"), ("lock-outputs", "--target", "synthetic-small"),
                                  ("matrix", "--targets", "synthetic-small")])
def test_a_task_without_a_dry_run_refuses_dry_before_running_anything(tmp_path: Path, env: Dict[str, str], args) -> None:
    result = _dry(*args, "--artifacts", str(tmp_path / "artifacts"), env=env, check=False)
    assert result.returncode == 2
    assert f"ds2ir: error: 'invoke {args[0]}' has no dry run, so 'invoke --dry {args[0]}' ran nothing;" in result.stdout
    assert not (tmp_path / "artifacts").exists() and fake_docker.calls(tmp_path / "docker") == []
