"""Host-side build orchestration without Docker: `invoke clean` and `--dry-run` (a fake `docker` on PATH)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Tuple

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host import clean as build
from ds2ir.model.layout import TARGETS_ENV
from tests._support import fake_docker
from tests.e2e.helpers import PROJECT, invoke

KNOWN = ("synthetic-small", "ldc93s1-smoke")


def _tree(root: Path) -> Dict[str, Tuple[str, bytes, int]]:
    """Every entry under ``root`` with its kind, content and mtime: what 'nothing changed' compares."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            data = path.read_bytes() if kind == "file" else b""
            found[str(path.relative_to(root))] = (kind, data, path.lstat().st_mtime_ns)
    return found


def _built(artifacts: Path, name: str, how: str = "mark") -> Path:
    path = artifacts / name
    (path / "ir").mkdir(parents=True)
    (path / "ir" / "output_graph.xml").write_text("<net/>")
    if how == "mark":
        (path / build.TARGET_MARK).write_text(name + "\n")
    elif how == "stamps":
        (path / ".stamps").mkdir()
    return path


@pytest.fixture
def world(tmp_path: Path) -> Dict[str, Path]:
    """A checkout-like directory with precious files, an artifacts root inside it, a victim beside it."""
    home = tmp_path / "home"
    (home / ".git").mkdir(parents=True)
    (home / "uncommitted.txt").write_text("precious")
    artifacts = home / "artifacts"
    artifacts.mkdir()
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "data").write_text("precious")
    return {"root": tmp_path, "home": home, "artifacts": artifacts}


@pytest.mark.parametrize("name", ["..", "../victim", "../../victim", ".", "a/b", "synthetic-small/.."])
def test_clean_refuses_names_that_leave_the_artifacts_root(world, name):
    before = _tree(world["root"])
    with pytest.raises(ConfigError, match="is not allowed"):
        build.clean(world["artifacts"], [name], KNOWN)
    assert _tree(world["root"]) == before


def test_clean_refuses_an_absolute_path(world):
    before = _tree(world["root"])
    with pytest.raises(ConfigError, match="is not allowed"):
        build.clean(world["artifacts"], [str(world["root"] / "victim")], KNOWN)
    assert _tree(world["root"]) == before


def test_clean_refuses_an_unknown_name_and_a_directory_ds2ir_did_not_make(world):
    (world["artifacts"] / "photos").mkdir()
    before = _tree(world["root"])
    with pytest.raises(ConfigError, match="'no-such-target' is not a target"):
        build.clean(world["artifacts"], ["no-such-target"], KNOWN)
    with pytest.raises(ConfigError, match="photos is not a target directory ds2ir made"):
        build.clean(world["artifacts"], ["photos"], KNOWN)
    assert _tree(world["root"]) == before


def test_clean_refuses_a_symlinked_target_directory_and_keeps_what_it_points_at(world):
    elsewhere = _built(world["root"], "synthetic-small")
    (world["artifacts"] / "synthetic-small").symlink_to(elsewhere)
    before = _tree(world["root"])
    with pytest.raises(ConfigError, match="symbolic link"):
        build.clean(world["artifacts"], ["synthetic-small"], KNOWN)
    with pytest.raises(ConfigError, match="did not make"):  # without --target it is a foreign entry too
        build.clean(world["artifacts"], [], KNOWN)
    assert _tree(world["root"]) == before


def test_clean_without_targets_refuses_a_directory_holding_anything_else(world):
    _built(world["artifacts"], "synthetic-small")
    (world["artifacts"] / "photos").mkdir()
    before = _tree(world["root"])
    with pytest.raises(ConfigError, match=r"1 directory that ds2ir did not make \(photos\).*nothing was removed"):
        build.clean(world["artifacts"], [], KNOWN)
    assert _tree(world["root"]) == before


def test_clean_removes_only_ds2ir_target_directories_and_says_which(world):
    marked = _built(world["artifacts"], "synthetic-small")
    stamped = _built(world["artifacts"], "ldc93s1-smoke", how="stamps")  # built before marks existed
    (world["artifacts"] / "matrix").mkdir()
    (world["artifacts"] / ".cache").mkdir()
    (world["artifacts"] / ".locks").mkdir()
    (world["artifacts"] / "ci").mkdir()
    assert build.clean(world["artifacts"], [], KNOWN) == [stamped, marked]
    assert sorted(p.name for p in world["artifacts"].iterdir()) == [".cache", ".locks", "ci", "matrix"]
    assert build.clean(world["artifacts"], ["synthetic-small"], KNOWN) == []  # known, not built: nothing to do


def test_a_mark_naming_another_target_is_not_ds2irs(world):
    path = _built(world["artifacts"], "synthetic-small")
    (path / build.TARGET_MARK).write_text("other\n")
    assert not build.is_target_dir(path)


def test_invoke_clean_prints_what_it_removed_and_fails_clearly_without_a_traceback(world):
    _built(world["artifacts"], "synthetic-small")
    result = invoke("clean", "--artifacts", str(world["artifacts"]), "--target", "..", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout
    assert "ds2ir: error: --target '..' is not allowed" in result.stdout
    assert (world["home"] / "uncommitted.txt").is_file() and (world["home"] / ".git").is_dir()
    result = invoke("clean", "--artifacts", str(world["artifacts"]), "--target", "synthetic-small")
    assert result.stdout == f"removed {world['artifacts'] / 'synthetic-small'}\n"


def test_a_target_name_that_leaves_the_artifacts_root_is_refused_before_anything_runs(tmp_path, world):
    stale = world["root"] / "victim" / ".data.tmp-1"
    stale.write_text("x")
    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text() + '\n[targets."../victim"]\nextends = "synthetic-small"\n')
    env = {TARGETS_ENV: str(targets), **fake_docker.install(tmp_path / "docker")}
    before = _tree(world["root"])
    result = invoke("build", "--dry-run", "--target", "../victim", "--artifacts", str(world["artifacts"]), env=env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout
    assert "target name '../victim' is not allowed" in result.stdout
    assert _tree(world["root"]) == before and stale.is_file()


@pytest.mark.parametrize("target", ["synthetic-small", "ldc93s1-smoke", "deepspeech-0.8.2-upstream"])
def test_dry_run_changes_nothing_on_disk_or_in_the_engine(tmp_path, target):
    """A dry run over a half-built target dir with stale temporaries and stamps: no file created, changed or
    deleted (artifacts, lock file, download cache), and no docker command that changes the engine."""
    artifacts = tmp_path / "artifacts"
    built = _built(artifacts, target)
    (built / ".stamps").mkdir()
    (built / ".stamps" / "freeze.json").write_text("{}")
    (built / ".ir.tmp-interrupted").mkdir()
    (built / ".output_graph.pb.tmp-x").write_text("partial")
    cache = tmp_path / "cache"
    cache.mkdir()
    env = {"DS2IR_CACHE": str(cache), **fake_docker.install(tmp_path / "docker")}
    before = _tree(tmp_path / "artifacts"), _tree(cache)
    result = invoke("build", "--dry-run", "--target", target, "--artifacts", str(artifacts), env=env)
    assert "(dry run)" in result.stdout
    assert (_tree(tmp_path / "artifacts"), _tree(cache)) == before
    changing = [call for call in fake_docker.calls(tmp_path / "docker") if call[0] in fake_docker.MUTATING]
    assert changing == []


def test_clean_keeps_exactly_the_root_directories_matrix_bench_and_ci_local_write() -> None:
    from ds2ir.host import ci, matrix
    from ds2ir.model import bench

    assert set(build.ROOT_DIRECTORIES) == {matrix.MATRIX_DIR, bench.BENCH_DIR, ci.CI_DIR}
