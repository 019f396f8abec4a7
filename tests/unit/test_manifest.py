import json
from pathlib import Path

import pytest

from ds2ir.errors import ReproducibilityError
from ds2ir.host import manifest
from ds2ir.model.layout import ArtifactLayout


def test_output_files_are_the_frozen_graph_plain_and_memory_mapped_and_the_ir():
    names = sorted(manifest.output_files(ArtifactLayout(Path("/a"), "t")))
    assert names == ["frozen/output_graph.pb", "frozen/output_graph.pbmm", "ir/output_graph.bin", "ir/output_graph.xml"]


def test_lock_then_check_passes_and_a_changed_file_is_named(tmp_path):
    lock = tmp_path / "outputs.lock.json"
    hashes = {"ir/output_graph.bin": "aa", "frozen/output_graph.pb": "bb"}
    manifest.lock_outputs(lock, "t", hashes)
    manifest.check_outputs(lock, "t", hashes)
    with pytest.raises(ReproducibilityError) as excinfo:
        manifest.check_outputs(lock, "t", dict(hashes, **{"ir/output_graph.bin": "cc"}))
    message = str(excinfo.value)
    assert "ir/output_graph.bin: expected aa, got cc" in message and "frozen" not in message


def test_check_without_a_locked_target_says_how_to_lock(tmp_path):
    with pytest.raises(ReproducibilityError, match="invoke lock-outputs --target t"):
        manifest.check_outputs(tmp_path / "outputs.lock.json", "t", {})


def test_lock_keeps_other_targets_and_is_sorted(tmp_path):
    lock = tmp_path / "outputs.lock.json"
    manifest.lock_outputs(lock, "b", {"x": "1"})
    manifest.lock_outputs(lock, "a", {"y": "2"})
    assert list(json.loads(lock.read_text())) == ["a", "b"]
