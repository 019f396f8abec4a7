"""The workflows are valid for GitHub's schemas and act's strict parser, and a broken one is refused."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ds2ir import ci
from ds2ir.errors import CommandError, MissingInputError
from ds2ir.runner import Runner

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
