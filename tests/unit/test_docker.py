"""Docker command lines and compose files built on the host (no engine needed)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ds2ir import config
from ds2ir.docker import bind_mount, render_env_file
from ds2ir.errors import ConfigError


def test_bind_mounts_quote_commas_colons_and_quotes_as_one_field() -> None:
    assert bind_mount(Path("/a:b,c\"d"), "/artifacts") == 'type=bind,"source=/a:b,c""d",target=/artifacts'
    assert bind_mount(Path("/plain"), "/x", read_only=True) == "type=bind,source=/plain,target=/x,readonly"
    with pytest.raises(ConfigError, match="control character"):
        bind_mount(Path("/a\nb"), "/x")


def test_env_file_refuses_a_value_with_a_newline() -> None:
    target = config.load_target("synthetic-small")
    assert "DS2IR_TARGET=synthetic-small\n" in render_env_file(target)
    bad = dataclasses.replace(target, freeze_image=dataclasses.replace(target.freeze_image, base_image="x\nINJECTED=1"))
    with pytest.raises(ConfigError, match="FREEZE_BASE_IMAGE .* control character"):
        render_env_file(bad)


def test_compose_env_refuses_a_base_image_with_a_newline_and_keeps_env(tmp_path: Path) -> None:
    from tests.e2e.helpers import PROJECT, invoke

    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text().replace(
        'base_image = "python:3.7-slim"', 'base_image = "python:3.7-slim\\nINJECTED=1"', 1))
    env_file = PROJECT / ".env"
    before = env_file.read_bytes() if env_file.exists() else None
    result = invoke("compose-env", env={config.TARGETS_ENV: str(targets)}, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    assert "contains a newline or another control character" in result.stdout
    assert (env_file.read_bytes() if env_file.exists() else None) == before
