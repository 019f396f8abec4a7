"""Bad configuration through `invoke build` (no Docker reached): one message naming file and key, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ds2ir.model.layout import TARGETS_ENV
from tests.e2e.helpers import PROJECT, invoke

BASE = "[targets.\"bad-small\"]\nextends = \"synthetic-small\"\n"


def build(tmp_path, *args: str, env=None):  # type: ignore[no-untyped-def]
    result = invoke("build", "--artifacts", str(tmp_path / "artifacts"), *args, env=env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    assert not (tmp_path / "artifacts").exists()  # nothing started
    return result.stdout


def test_unknown_target_suggests_the_close_one(tmp_path):
    out = build(tmp_path, "--target", "synthetic-smal")
    assert f"{PROJECT / 'targets.toml'}: unknown target 'synthetic-smal'. Did you mean 'synthetic-small'?" in out


@pytest.mark.parametrize("line, key, message", [
    ("n_hiden = 32", "targets.bad-small.n_hiden", "unknown key. Did you mean 'n_hidden'?"),
    ("n_hidden = 0", "targets.bad-small.n_hidden", "n_hidden must be a whole number from 1 to 8192, got 0"),
    ("n_steps = -16", "targets.bad-small.n_steps", "n_steps must be a whole number from 1 to 1024, got -16"),
    ("n_hidden = \"64\"", "targets.bad-small.n_hidden", "must be int, got '64'"),
    ("n_context = -1", "targets.bad-small.n_context", "n_context must be a whole number from 0 to 64, got -1"),
    ("n_input = 41", "targets.bad-small.n_input", "at most 40 coefficients exist"),
    ("ir_precision = \"FP8\"", "targets.bad-small.ir_precision", "FP8"),
])
def test_bad_key_in_the_targets_file_is_named_with_file_and_key(tmp_path, line, key, message):
    targets = tmp_path / "targets.toml"
    targets.write_text((PROJECT / "targets.toml").read_text() + "\n" + BASE + line + "\n")
    out = build(tmp_path, "--target", "synthetic-small", env={TARGETS_ENV: str(targets)})
    assert f"ds2ir: error: {targets}: [{key}]: " in out and message in out


def test_missing_targets_file_says_how_to_point_at_one(tmp_path):
    out = build(tmp_path, "--target", "synthetic-small", env={TARGETS_ENV: str(tmp_path / "nowhere.toml")})
    assert f"the targets file {tmp_path / 'nowhere.toml'} does not exist; set {TARGETS_ENV}" in out


def test_debug_shows_what_caused_the_error_and_the_plain_message_does_not(tmp_path):
    """Errors keep their causes (`raise ... from exc`): --debug prints the chain down to the TOML parser's
    own error, in `invoke` and in the stage images' `python -m ds2ir` alike."""
    targets = tmp_path / "targets.toml"
    targets.write_text("[targets.broken\nn_hidden = 64\n")
    env = {TARGETS_ENV: str(targets)}
    assert "TOMLDecodeError" not in build(tmp_path, "--target", "synthetic-small", env=env)
    shown = invoke("build", "--debug", "--target", "synthetic-small", "--artifacts", str(tmp_path / "artifacts"),
                   env=env, check=False).stdout
    in_image = subprocess.run([sys.executable, "-m", "ds2ir", "--debug", "freeze", "--artifacts", str(tmp_path / "artifacts")],
                              env=dict(os.environ, PYTHONPATH=str(PROJECT / "src"), **env), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True)
    for out in (shown, in_image.stdout):
        assert "TOMLDecodeError" in out and "The above exception was the direct cause of the following exception" in out
        assert f"ds2ir: error: {targets}: not valid TOML" in out
    assert in_image.returncode == 2 and not (tmp_path / "artifacts").exists()
