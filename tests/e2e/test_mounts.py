"""Stage containers see the artifacts directory and inputs whatever their paths hold (',' and ':' split `-v` values)."""
from __future__ import annotations

import os
from pathlib import Path

from ds2ir.host.docker import Docker
from tests._support.stages import run_stage


def test_artifacts_path_with_colon_comma_and_quote_is_mounted_as_given(docker: Docker, tmp_path: Path) -> None:
    artifacts = tmp_path / 'a:b,c"d'
    targets = tmp_path / "t:1,2.toml"
    targets.write_text("targets\n")
    recording = tmp_path / "in,put:1.wav"
    recording.write_text("input\n")
    image = docker.resolve_base_image("python:3.11-slim")
    out = run_stage(docker, step="mount probe", image=image, entrypoint="sh", artifacts=artifacts, targets=targets,
                           read_only={recording: "/input/in,put:1.wav"}, capture=True,
                           args=["-c", "cat '/input/in,put:1.wav' /etc/ds2ir/targets.toml && echo written > /artifacts/out"])
    assert out == "input\ntargets\n"
    assert (artifacts / "out").read_text() == "written\n"
    assert artifacts.stat().st_uid == os.getuid()  # made by ds2ir as the user (-v let the engine make it as root)
