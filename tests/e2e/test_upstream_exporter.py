"""Exporter "deepspeech" end to end, with a fixture source archive served from loopback.

One build (synthetic-small's n_hidden 64): the host fetches and verifies the archive, the
freeze image installs it (``pip install -c CONSTRAINTS -e .``), DeepSpeech.py runs from the
source directory with the target's flags, then convert and check. The image uses the
freeze-tf1.15.2 lock (TensorFlow 1.15.2, DeepSpeech 0.8.2's pin), whose layers the matrix's
synthetic-small-tf1.15.2 image shares, to keep CI cheap. The refusals need no image.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Tuple

from ds2ir.model.layout import ArtifactLayout
from ds2ir.stages.freeze.upstream import SOURCE_DIR
from tests._support.http_server import AssetServer, asset_server  # noqa: F401  (pytest fixture)
from tests._support.upstream_source import RECORD, upstream_source_archive
from tests.e2e.helpers import PROJECT, invoke, pinned_assets_environment

ASSET = "/mozilla/DeepSpeech/archive/v0.8.2.tar.gz"
TARGET = "upstream-small"


def _setup(tmp_path: Path, server: AssetServer, *, tamper: bool = False) -> Tuple[Dict[str, str], str]:
    """Serve the fixture archive (``tamper``: its last bytes changed), pin the genuine one in a temp
    assets lock, add the test target; return the environment and the archive's URL."""
    body = upstream_source_archive(tmp_path / "v0.8.2.tar.gz").read_bytes()
    url = server.add(ASSET, body, served_body=body[:-10] + b"0123456789" if tamper else None)
    env = pinned_assets_environment(tmp_path, (PROJECT / "targets.toml").read_text() + f"""
[releases."upstream-test"]
graph_version = 6
source_url = "{url}"
n_hidden = 64

[images."freeze-upstream-test"]
stage = "freeze"
dockerfile = "Dockerfile.upstream"
base_image = "python:3.7-slim"
python = "3.7"
lock = "locks/freeze-tf1.15.2.txt"
source_release = "upstream-test"
constraints = "locks/deepspeech-0.8.2.constraints.txt"

[targets."{TARGET}"]
extends = "synthetic-small"
release = "upstream-test"
freeze_image = "freeze-upstream-test"
exporter = "deepspeech"
""", {url: body})
    return env, url


def test_deepspeech_py_exports_from_its_source_directory_then_convert_and_check(tmp_path, asset_server):  # noqa: F811
    env, _ = _setup(tmp_path, asset_server)
    artifacts = tmp_path / "artifacts"
    started = time.monotonic()
    invoke("build", "--target", TARGET, "--artifacts", str(artifacts), env=env)
    print(f"upstream exporter build: {time.monotonic() - started:.1f} s")

    layout = ArtifactLayout(artifacts, TARGET)
    assert layout.frozen_graph.is_file() and layout.ir_xml.is_file()
    assert json.loads((layout.check_dir / "report.json").read_text())["passed"]
    record = json.loads((artifacts / RECORD).read_text())
    assert record["cwd"] == str(SOURCE_DIR) and record["argv"][0] == "DeepSpeech.py"
    assert record["package"] == str(SOURCE_DIR / "training" / "deepspeech_training")  # the editable install
    flags = dict(zip(record["argv"][1::2], record["argv"][2::2]))
    checkpoint = f"/artifacts/{TARGET}/checkpoint"
    assert flags["--checkpoint_dir"] == checkpoint and flags["--alphabet_config_path"] == f"{checkpoint}/alphabet.txt"
    assert (flags["--n_hidden"], flags["--n_steps"], flags["--export_beam_width"]) == ("64", "16", "500")
    assert len(asset_server.requests_for(ASSET)) == 1


def test_tampered_source_archive_is_refused_and_changes_nothing(tmp_path, asset_server):  # noqa: F811
    env, url = _setup(tmp_path, asset_server, tamper=True)
    before = ArtifactLayout(tmp_path / "artifacts", TARGET).frozen_graph
    before.parent.mkdir(parents=True)
    before.write_bytes(b"an earlier graph")
    result = invoke("build", "--target", TARGET, "--artifacts", str(tmp_path / "artifacts"), env=env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    assert "source archive" in result.stdout and url in result.stdout and "sha256" in result.stdout
    assert before.read_bytes() == b"an earlier graph"
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_offline_without_the_source_names_the_file_and_the_import(tmp_path, asset_server):  # noqa: F811
    env, url = _setup(tmp_path, asset_server)
    result = invoke("build", "--target", TARGET, "--artifacts", str(tmp_path / "artifacts"), "--offline",
                    env=env, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stdout, result.stdout
    assert "v0.8.2.tar.gz" in result.stdout and "invoke fetch --import PATH" in result.stdout and url in result.stdout
    assert asset_server.requests_for(ASSET) == []
