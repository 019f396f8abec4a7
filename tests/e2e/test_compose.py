"""docker-compose.yml runs the same two stages (compose v1 and, where installed, v2)."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from ds2ir.host.compose import compose_environment, exit_codes, render_env_file
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file
from tests.e2e.helpers import PROJECT

COMPOSE_COMMANDS = {"v1": ["docker-compose"], "v2": ["docker", "compose"]}


@pytest.mark.parametrize("version", sorted(COMPOSE_COMMANDS))
def test_compose_up_freezes_and_converts(docker, tmp_path, version):
    command = COMPOSE_COMMANDS[version]
    if subprocess.run(command + ["version"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip(f"compose {version} ({' '.join(command)}) is not installed on this host")
    target = load_target(targets_file(), "synthetic-small")
    bases = {spec.base_image: docker.resolve_base_image(spec.base_image) for spec in (target.freeze_image, target.convert_image)}
    env = dict(os.environ, **compose_environment(target, bases), DS2IR_ARTIFACTS=str(tmp_path),
               DS2IR_UID=str(os.getuid()), DS2IR_GID=str(os.getgid()))
    project = ["-p", f"ds2irtest{version}"]
    try:
        result = subprocess.run(command + project + ["up", "--build"], cwd=str(PROJECT), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        codes = exit_codes(docker, command + project, cwd=PROJECT, env=env)
    finally:
        subprocess.run(command + project + ["down"], cwd=str(PROJECT), env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert result.returncode == 0 and codes == {"freeze": 0, "convert": 0}, result.stdout[-4000:]
    paths = ArtifactLayout(tmp_path, target.name)
    for path in (paths.checkpoint_dir / "best_dev-1.index", paths.frozen_graph, paths.ir_xml, paths.ir_bin):
        assert path.is_file(), path
    assert json.loads((paths.check_dir / "report.json").read_text())["passed"] is True


def test_committed_env_file_matches_targets():
    assert (PROJECT / ".env").read_text() == render_env_file(load_target(targets_file()))
