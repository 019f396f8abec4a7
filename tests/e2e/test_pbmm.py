"""`.pbmm` out and in: the memory-mapped graph every build writes (frozen/output_graph.pbmm), loaded by
DeepSpeech's native client; a target built from a served .pbmm; your own .pbmm, and malformed ones; a checkpoint
verified by agreement with a pinned .pbmm."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path
from typing import Dict

import pytest

from ds2ir.host.assets_lock import LockEntry, read_lock, write_lock
from ds2ir.model import pbmm
from ds2ir.model.layout import ArtifactLayout
from tests._support.http_server import asset_server  # noqa: F401  (pytest fixture)
from tests._support.tarballs import release_tarball
from tests.e2e.helpers import (
    PROJECT,
    invoke,
    last_json,
    pinned_assets_environment,
    served_release_targets,
    stage_command,
)

SENTENCE = "she had your dark suit in greasy wash water all year"


def test_native_client_transcribes_our_pbmm_as_our_pb_and_its_constants_are_the_pbs(smoke_build, docker):
    """deepspeech 0.9.3 (its own TensorFlow 2.3) maps our .pbmm and reads the sentence the trained model
    reads from the .pb; unpacked, the .pbmm gives back the .pb's GraphDef with every constant bit for bit."""
    shutil.copy(str(PROJECT / "data" / "LDC93S1.wav"), str(smoke_build / "LDC93S1.wav"))
    output = stage_command(docker, "ldc93s1-smoke", "freeze", ["check-pbmm", "--audio", "/artifacts/LDC93S1.wav"],
                           smoke_build)
    result = last_json(output)
    assert result["native_client"] == "0.9.3" and result["memory_mapped"] >= 6
    assert result["differing_constants"] == [] and result["graph_def_identical"] is True
    assert result["transcripts"] == {"pb": SENTENCE, "pbmm": SENTENCE}


ASSET = "/releases/v0.0-test/deepspeech-test-models.pbmm"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> ArtifactLayout:
    """synthetic-small frozen by the real freeze image: its checkpoint, .pb and .pbmm, shared by this module."""
    made = tmp_path_factory.mktemp("made")
    invoke("freeze", "--target", "synthetic-small", "--artifacts", str(made))
    return ArtifactLayout(made, "synthetic-small")


def _tree(directory: Path) -> Dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_pbmm_target_is_fetched_verified_unpacked_and_built_and_bad_model_files_change_nothing(
        tmp_path, asset_server, small):  # noqa: F811
    """The .pbmm ds2ir writes for synthetic-small (its digest pinned in outputs.lock.json) served as a release's
    model file: fetched, verified, unpacked back to the very .pb, converted to the very IR weights, checked."""
    source = small
    body = source.frozen_pbmm.read_bytes()
    locked = json.loads((PROJECT / "outputs.lock.json").read_text())["synthetic-small"]
    assert hashlib.sha256(body).hexdigest() == locked["frozen/output_graph.pbmm"]
    url = asset_server.add(ASSET, body)
    env = pinned_assets_environment(tmp_path, served_release_targets("served-pbmm", "pbmm", model_url=url), {url: body})
    artifacts = tmp_path / "artifacts"
    invoke("build", "--target", "served-pbmm", "--artifacts", str(artifacts), env=env)
    layout = ArtifactLayout(artifacts, "served-pbmm")
    assert layout.model_file.read_bytes() == body and len(asset_server.requests_for(ASSET)) == 1
    assert layout.frozen_graph.read_bytes() == source.frozen_graph.read_bytes()
    assert hashlib.sha256(layout.ir_bin.read_bytes()).hexdigest() == locked["ir/output_graph.bin"]

    # Your own .pbmm: a truncated one, or a .pb, is refused on the host and the artifacts stay as they were.
    before = _tree(layout.target_dir)
    truncated = tmp_path / "mine.pbmm"
    truncated.write_bytes(body[:len(body) // 2])
    for model, message in ((truncated, "is not a usable memory-mapped model (.pbmm)"),
                           (source.frozen_graph, "is a plain frozen GraphDef (.pb), not a memory-mapped model")):
        result = invoke("build", "--target", "served-pbmm", "--model", str(model), "--artifacts", str(artifacts),
                        env=env, check=False)
        assert result.returncode != 0 and message in result.stdout and "Traceback" not in result.stdout
        assert _tree(layout.target_dir) == before
    # ... and a sound one with the same bytes leaves every stage up to date.
    mine = tmp_path / "mine-good.pbmm"
    mine.write_bytes(body)
    result = invoke("build", "--target", "served-pbmm", "--model", str(mine), "--artifacts", str(artifacts), env=env)
    assert "ran: nothing (all up to date)" in result.stdout


CHECKPOINT_ASSET = "/releases/v0.0-test/deepspeech-test-checkpoint.tar.gz"


def _agreement_environment(tmp_path: Path, asset_server, checkpoint: bytes, model: bytes) -> Dict[str, str]:  # noqa: F811
    """A release whose checkpoint has no digest in the lock and whose .pbmm is pinned."""
    name = tmp_path.name
    checkpoint_url = asset_server.add(f"/{name}{CHECKPOINT_ASSET}", checkpoint)
    model_url = asset_server.add(f"/{name}{ASSET}", model)
    env = pinned_assets_environment(
        tmp_path, served_release_targets("agreed-small", "release", checkpoint_url=checkpoint_url, model_url=model_url),
        {model_url: model})
    lock = Path(env["DS2IR_ASSETS_LOCK"])
    entries = read_lock(lock)
    entries[checkpoint_url] = LockEntry()  # no digest: only the model file's is known
    write_lock(lock, entries)
    return env


def test_checkpoint_without_a_digest_is_verified_by_agreement_with_the_pinned_pbmm(tmp_path, asset_server, small):  # noqa: F811
    source = small
    tarball = release_tarball(tmp_path / "release.tar.gz", root="deepspeech-test-checkpoint",
                              files={p.name: p.read_bytes() for p in source.checkpoint_dir.iterdir()}).read_bytes()
    model = source.frozen_pbmm.read_bytes()

    # The same weights: the checkpoint's digest is recorded, and the manifest says how it was verified.
    agreed = tmp_path / "agreed"
    agreed.mkdir()
    env = _agreement_environment(agreed, asset_server, tarball, model)
    invoke("freeze", "--target", "agreed-small", "--artifacts", str(agreed / "artifacts"), env=env)
    url = next(u for u in read_lock(Path(env["DS2IR_ASSETS_LOCK"])) if u.endswith(CHECKPOINT_ASSET))
    assert read_lock(Path(env["DS2IR_ASSETS_LOCK"]))[url].sha256 == hashlib.sha256(tarball).hexdigest()
    layout = ArtifactLayout(agreed / "artifacts", "agreed-small")
    manifest = json.loads((layout.target_dir / "manifest.json").read_text())
    assert manifest["checkpoint_verification"]["verified_by"].startswith("agreement: every weight equals, bit for bit")

    # One weight changed in the pinned .pbmm: refused, naming it; nothing recorded, extracted or cached.
    regions = pbmm.read_directory(model, "model")
    offset = regions["memmapped_package://layer_1_weights"].offset
    (value,) = struct.unpack_from("<f", model, offset)
    changed = model[:offset] + struct.pack("<f", value + 0.5) + model[offset + 4:]
    refused = tmp_path / "refused"
    refused.mkdir()
    env = _agreement_environment(refused, asset_server, tarball, changed)
    lock_before = Path(env["DS2IR_ASSETS_LOCK"]).read_bytes()
    result = invoke("freeze", "--target", "agreed-small", "--artifacts", str(refused / "artifacts"), env=env, check=False)
    assert result.returncode != 0 and "Traceback" not in result.stdout
    assert "do not agree with the release's model file" in result.stdout and "layer_1/weights: max |Δ| 0.5" in result.stdout
    assert Path(env["DS2IR_ASSETS_LOCK"]).read_bytes() == lock_before
    layout = ArtifactLayout(refused / "artifacts", "agreed-small")
    assert not layout.checkpoint_dir.exists() and not layout.frozen_graph.exists()
    assert not [p for p in (refused / "cache").rglob("*.tar.gz")]
