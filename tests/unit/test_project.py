"""The one Project tasks.py builds: defaults, invoke's ``ds2ir`` settings, the DS2IR_* variables over both."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host.project import Project
from tests._support import fake_docker
from tests._support.checkout import CHECKOUT
from tests.e2e.workspace import checkout_copy


def test_defaults_are_the_checkouts_own_files(tmp_path: Path) -> None:
    project = Project.of_checkout(tmp_path, environ={"HOME": str(tmp_path / "home")})
    assert (project.root, project.targets, project.assets_lock, project.outputs_lock) == (
        tmp_path, tmp_path / "targets.toml", tmp_path / "assets.lock.toml", tmp_path / "outputs.lock.json")
    assert (project.recordings, project.artifacts) == (tmp_path / "data", tmp_path / "artifacts")


def test_settings_are_relative_to_the_checkout_and_variables_override_them(tmp_path: Path) -> None:
    settings = {"targets": "conf/t.toml", "artifacts": "/elsewhere/out", "cache": "cache"}
    project = Project.of_checkout(tmp_path, settings, environ={})
    assert (project.targets, project.artifacts, project.cache) == (
        tmp_path / "conf" / "t.toml", Path("/elsewhere/out"), tmp_path / "cache")
    overridden = Project.of_checkout(tmp_path, settings, environ={
        "DS2IR_TARGETS": "/x/t.toml", "DS2IR_ASSETS_LOCK": "/x/a.toml", "DS2IR_CACHE": "/x/cache"})
    assert (overridden.targets, overridden.assets_lock, overridden.cache) == (
        Path("/x/t.toml"), Path("/x/a.toml"), Path("/x/cache"))


def test_the_cache_defaults_to_the_users_xdg_cache(tmp_path: Path) -> None:
    assert Project.of_checkout(tmp_path, environ={"XDG_CACHE_HOME": str(tmp_path / "xdg")}).cache == tmp_path / "xdg" / "ds2ir"
    home = {"XDG_CACHE_HOME": "relative/is/ignored", "HOME": str(tmp_path / "home")}
    assert Project.of_checkout(tmp_path, environ=home).cache == tmp_path / "home" / ".cache" / "ds2ir"


def test_an_unknown_or_malformed_setting_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'ds2ir.targts' in invoke's configuration is not a ds2ir setting; "
                                          r"the settings are artifacts, assets_lock, cache, outputs_lock"):
        Project.of_checkout(tmp_path, {"targts": "t.toml"}, environ={})
    with pytest.raises(ConfigError, match=r"'ds2ir.artifacts' in invoke's configuration must be a path, got 3"):
        Project.of_checkout(tmp_path, {"artifacts": 3}, environ={})


def test_with_artifacts_moves_only_the_artifacts(tmp_path: Path) -> None:
    project = Project.of_checkout(tmp_path, environ={})
    moved = project.with_artifacts(tmp_path / "other")
    assert moved.artifacts == tmp_path / "other" and moved.targets == project.targets
    assert project.with_artifacts(None) is project


CLONE_ONLY = '\n[targets."clone-only"]\ndescription = "a target only the second clone has"\nextends = "synthetic-small"\n'


def _snapshot(checkout: Path) -> Dict[str, Optional[bytes]]:
    """The files of a checkout that a task of another clone must never touch."""
    names = ["targets.toml", "assets.lock.toml", "outputs.lock.json", ".env"]
    found: Dict[str, Optional[bytes]] = {name: (checkout / name).read_bytes() if (checkout / name).is_file() else None
                                         for name in names}
    artifacts = checkout / "artifacts"
    found["artifacts/"] = "\n".join(sorted(p.name for p in artifacts.iterdir())).encode() if artifacts.is_dir() else None
    return found


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A second clone of this checkout whose targets.toml has a target and a default_target of its own."""
    clone = checkout_copy(tmp_path / "clone")
    text = (clone / "targets.toml").read_text()
    default = re.search(r'^default_target = "[^"]+"$', text, flags=re.MULTILINE)
    assert default is not None
    (clone / "targets.toml").write_text(text.replace(default.group(0), 'default_target = "clone-only"') + CLONE_ONLY)
    return clone


def _invoke(clone: Path, tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess:
    """`invoke -r CLONE ...` from a third directory, the package imported from THIS checkout (its src/ first on
    PYTHONPATH, as when it was pip-installed from here) and no DS2IR_* variable pointing anywhere."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DS2IR_")}
    env.update(PYTHONPATH=str(CHECKOUT / "src"), DS2IR_CACHE=str(tmp_path / "cache"), **fake_docker.install(tmp_path / "docker"),
               **variables)
    result = subprocess.run([sys.executable, "-m", "invoke", "-r", str(clone), *args], cwd=str(tmp_path), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout[-4000:]
    return result


def test_two_clones_never_read_or_write_each_others_files(clone: Path, tmp_path: Path) -> None:
    """Before: the package's location decided the checkout, so a clone's tasks read the targets.toml, locks and
    artifacts of the checkout the package was installed from."""
    import ds2ir

    assert Path(ds2ir.__file__).resolve().is_relative_to(CHECKOUT / "src")
    before = _snapshot(CHECKOUT)
    assert _invoke(clone, tmp_path, "matrix", "--list", "--targets", "clone-only").stdout == "clone-only\n"
    assert "DS2IR_TARGET=clone-only\n" in _invoke(clone, tmp_path, "compose-env").stdout + (clone / ".env").read_text()
    brought = tmp_path / "asset.bin"
    brought.write_bytes(b"an asset only the clone pins")
    _invoke(clone, tmp_path, "fetch", "--import", str(brought), "--url", "https://example.invalid/asset.bin",
            "--trust-on-first-use")
    assert "https://example.invalid/asset.bin" in (clone / "assets.lock.toml").read_text()
    dry = _invoke(clone, tmp_path, "build", "--dry-run").stdout  # the clone's default target, its artifacts
    assert "[clone-only]" in dry and str(clone / "targets.toml") in dry  # the targets file the stages mount
    assert f"outputs in {clone / 'artifacts' / 'clone-only'}" in dry
    doctor = _invoke(clone, tmp_path, "doctor").stdout
    assert f"{clone / 'targets.toml'} (" in doctor and str(clone / "artifacts") in doctor
    assert str(CHECKOUT) not in dry + doctor
    assert _snapshot(CHECKOUT) == before


def test_invoke_configuration_sets_the_projects_paths(clone: Path, tmp_path: Path) -> None:
    """invoke.yaml beside tasks.py over the defaults, invoke's INVOKE_DS2IR_* variables over invoke.yaml."""
    (clone / "invoke.yaml").write_text("ds2ir:\n  artifacts: build-output\n  targets: conf/targets.toml\n")
    (clone / "conf").mkdir()
    (clone / "targets.toml").rename(clone / "conf" / "targets.toml")
    doctor = _invoke(clone, tmp_path, "doctor").stdout
    assert f"{clone / 'conf' / 'targets.toml'} (" in doctor and str(clone / "build-output") in doctor
    elsewhere = tmp_path / "elsewhere"
    assert str(elsewhere) in _invoke(clone, tmp_path, "doctor", INVOKE_DS2IR_ARTIFACTS=str(elsewhere)).stdout
