"""Stage containers see the artifacts directory whatever its path holds (',' and ':' split `-v` values)."""
from __future__ import annotations

from pathlib import Path

from ds2ir.docker import Docker


def test_artifacts_path_with_colon_comma_and_quote_is_mounted_as_given(docker: Docker, tmp_path: Path) -> None:
    artifacts = tmp_path / 'a:b,c"d'
    artifacts.mkdir()
    (artifacts / "inside.txt").write_text("artifacts\n")
    targets = tmp_path / "t:1,2.toml"
    targets.write_text("targets\n")
    image = docker.resolve_base_image("python:3.11-slim")
    out = docker.run_stage(step="mount probe", image=image, entrypoint="cat", artifacts=artifacts, targets=targets,
                           args=["/artifacts/inside.txt", "/etc/ds2ir/targets.toml"], capture=True)
    assert out == "artifacts\ntargets\n"
