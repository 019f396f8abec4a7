"""The workflows are valid for GitHub's schemas and act's strict parser, and a broken one is refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ds2ir.errors import CommandError, MissingInputError
from ds2ir.host import ci, matrix
from ds2ir.model.targets_file import TargetsFile
from ds2ir.runner import Runner
from tests._support.checkout import targets_file

PROJECT = Path(__file__).resolve().parents[2]


def copy_github_dir(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT / ".github", tmp_path / ".github")
    return tmp_path


def test_the_checkouts_workflows_and_actions_are_valid() -> None:
    checked = ci.lint(PROJECT, Runner(echo_output=False))
    names = {path.relative_to(PROJECT).as_posix() for path in checked}
    assert ".github/workflows/reproduce.yml" in names
    assert ".github/actions/host-tools/action.yml" in names
    assert ".github/act/setup-python/action.yml" in names


@pytest.mark.parametrize("old, new", [
    ("runs-on: ubuntu-latest", "runs-onn: ubuntu-latest"),  # a misspelt key
    ("timeout-minutes: 60", "timeout-minutes: [60]"),  # a value of the wrong type
])
def test_a_broken_workflow_fails_the_lint_naming_the_file(tmp_path: Path, old: str, new: str) -> None:
    project = copy_github_dir(tmp_path)
    workflow = project / ci.WORKFLOWS_DIR / "reproduce.yml"
    workflow.write_text(workflow.read_text().replace(old, new, 1))
    with pytest.raises(CommandError) as caught:
        ci.lint(project, Runner(echo_output=False))
    assert "reproduce.yml" in caught.value.log_tail


def test_a_broken_local_action_fails_the_lint(tmp_path: Path) -> None:
    project = copy_github_dir(tmp_path)
    action = project / ci.ACTIONS_DIR / "host-tools" / "action.yml"
    action.write_text(action.read_text().replace("using: composite", "using: compost"))
    with pytest.raises(CommandError) as caught:
        ci.lint(project, Runner(echo_output=False))
    assert caught.value.step == "lint actions"


def test_no_workflows_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MissingInputError, match="No workflows to lint"):
        ci.lint(tmp_path, Runner(echo_output=False))


def test_act_maps_every_remote_action_but_checkout_to_a_stand_in_in_the_clone(tmp_path: Path) -> None:
    argv = ci.act_command(tmp_path, ".github/workflows/matrix.yml", "workflow_dispatch", None, {"targets": "a b"}, tmp_path)
    assert argv[:2] == ["act", "workflow_dispatch"] and "-j" not in argv
    assert argv[argv.index("-P") + 1] == "ubuntu-latest=-self-hosted"
    assert argv[argv.index("--input") + 1] == "targets=a b"
    assert argv[argv.index("--env-file") + 1] == str(tmp_path / "empty")  # never the checkout's compose .env
    mapped = dict(argv[i + 1].split("=", 1) for i, arg in enumerate(argv) if arg == "--local-repository")
    for action, folder in mapped.items():
        assert folder.startswith(str(tmp_path)) and (PROJECT / Path(folder).relative_to(tmp_path) / "action.yml").is_file()
    remote = set()
    for workflow in (PROJECT / ci.WORKFLOWS_DIR).glob("*.yml"):
        remote |= {line.split("uses:", 1)[1].strip() for line in workflow.read_text().splitlines()
                   if "uses:" in line and "./" not in line}
    assert remote - set(mapped) == {"actions/checkout@v4"}  # act provides checkout itself


# -- the matrix workflow's two ends: the job matrix, and one table from the runners' records ------------------

def cell_record(directory: Path, target: str, passed: bool, loads: dict) -> Path:
    cell = {"target": target, "passed": passed, "error": "" if passed else "outputs differ from outputs.lock.json",
            "lock": "bit-identical" if passed else "differs", "check": {"max_abs": 1e-6, "passed": True}}
    directory.mkdir(parents=True)
    (directory / "matrix.json").write_text(json.dumps({"passed": passed, "cells": [cell], "loads": loads}))
    return directory


def test_the_job_matrix_has_one_cell_per_target() -> None:
    targets = TargetsFile.load(targets_file(), project=PROJECT)
    cells = json.loads(matrix.github_matrix([targets.target(name) for name in targets.matrix]))
    assert [cell["target"] for cell in cells["include"]] == list(targets.matrix)


def test_gather_makes_one_table_and_fails_when_a_cell_failed(tmp_path: Path) -> None:
    a = cell_record(tmp_path / "cell-a", "synthetic-small", True, {"convert-ov2024.6": {"synthetic-small": "ok"}})
    b = cell_record(tmp_path / "cell-b", "synthetic-small-tf1.15.2", False, {"convert-ov2024.6": {"synthetic-small-tf1.15.2": "ok"}})
    result = matrix.gather([b, a], tmp_path / "out")
    assert result["passed"] is False
    assert [cell["target"] for cell in result["cells"]] == ["synthetic-small", "synthetic-small-tf1.15.2"]
    assert result["loads"] == {"convert-ov2024.6": {"synthetic-small": "ok", "synthetic-small-tf1.15.2": "ok"}}
    table = (tmp_path / "out" / "matrix.md").read_text()
    assert "| bit-identical | pass |" in table and "| differs | FAIL: outputs differ from outputs.lock.json |" in table
    assert matrix.gather([a], tmp_path / "out2")["passed"] is True


def test_gather_refuses_a_directory_without_a_record(tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "matrix.json").write_text("{not json")
    with pytest.raises(MissingInputError, match="not a matrix record"):
        matrix.gather([tmp_path / "junk"], tmp_path / "out")
    with pytest.raises(MissingInputError, match="No matrix records"):
        matrix.gather([], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_input_without_a_value_is_refused_before_anything_runs() -> None:
    from tests.e2e.helpers import invoke

    result = invoke("ci-local", "--workflow", "matrix.yml", "--input", "targets", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout
    assert "ds2ir: error: --input takes NAME=VALUE, got 'targets'" in result.stdout
    assert "check-jsonschema" not in result.stdout  # refused before the lint or act ran


# -- caching: keys, and cache steps that act skips -----------------------------------------------------------

def test_cache_keys_follow_the_image_tags_and_the_assets_lock(tmp_path: Path) -> None:
    lock = tmp_path / "assets.lock.toml"
    lock.write_text("# pins\n")
    tags = {"freeze": "ds2ir/freeze-tf1.15.5:aaaaaaaaaaaa", "convert": "ds2ir/convert-ov2024.6-notf:bbbbbbbbbbbb"}
    keys = ci.cache_keys(tags, lock)
    assert keys["images"] == "ds2ir-images-convert-ov2024.6-notf-bbbbbbbbbbbb-freeze-tf1.15.5-aaaaaaaaaaaa"
    assert keys["tags"] == "ds2ir/convert-ov2024.6-notf:bbbbbbbbbbbb ds2ir/freeze-tf1.15.5:aaaaaaaaaaaa"
    assert ci.cache_keys(dict(tags, convert="ds2ir/convert-ov2024.6-notf:cccccccccccc"), lock)["images"] != keys["images"]
    assert ci.cache_keys(tags, lock)["fetch"] == keys["fetch"]
    lock.write_text("# pins\n[\"https://example.org/a\"]\n")
    assert ci.cache_keys(tags, lock)["fetch"] != keys["fetch"]


def test_every_cache_step_is_skipped_under_act_and_keyed_by_the_keys_step() -> None:
    import yaml

    steps = [step for workflow in sorted((PROJECT / ci.WORKFLOWS_DIR).glob("*.yml"))
             for job in yaml.safe_load(workflow.read_text())["jobs"].values() for step in job["steps"]]
    caches = [step for step in steps if str(step.get("uses", "")).startswith("actions/cache@")]
    assert len(caches) == 4  # images and fetch cache, in reproduce.yml's reproduce job and matrix.yml's build job
    for step in caches:
        assert step["if"] == "${{ !env.ACT }}" and step["with"]["key"].startswith("${{ steps.keys.outputs."), step
    docker_steps = [step for step in steps if "docker save" in step.get("run", "") or "docker load" in step.get("run", "")]
    assert len(docker_steps) == 4 and all(step["if"].startswith("${{ !env.ACT && steps.images.outputs.cache-hit")
                                          for step in docker_steps)


def test_a_runners_kept_artifacts_directory_reaches_the_jobs(tmp_path: Path) -> None:
    argv = ci.act_command(tmp_path, ".github/workflows/matrix.yml", "workflow_dispatch", None, {}, tmp_path,
                          runner_artifacts=tmp_path / "kept")
    assert f"{ci.RUNNER_ARTIFACTS_ENV}={tmp_path / 'kept'}" in argv
    assert not any(arg.startswith(ci.RUNNER_ARTIFACTS_ENV) for arg in ci.act_command(tmp_path, "w", "push", None, {}, tmp_path))
    assert ci.RUNNER_ARTIFACTS_ENV in (PROJECT / ci.WORKFLOWS_DIR / "matrix.yml").read_text()
