"""Bit-identical rebuilds, the expected-hash lock and hermetic stages."""
from __future__ import annotations

import hashlib

import pytest

from ds2ir.errors import ContainerError
from ds2ir.host.images import ensure_stage_image
from ds2ir.model.layout import TARGETS_ENV, ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file
from tests._support.stages import run_stage
from tests.e2e.helpers import PROJECT, invoke


def _hashes(root, target):
    layout = ArtifactLayout(root, target)
    files = sorted(layout.checkpoint_dir.iterdir()) + [layout.frozen_graph, layout.frozen_pbmm, layout.ir_xml, layout.ir_bin]
    return {str(p.relative_to(layout.target_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_two_clean_builds_in_different_directories_are_bit_identical(tmp_path):
    for name in ("one", "two"):
        invoke("build", "--target", "synthetic-small", "--artifacts", str(tmp_path / name))
    assert _hashes(tmp_path / "one", "synthetic-small") == _hashes(tmp_path / "two", "synthetic-small")


def test_rebuild_matches_the_committed_lock(full_build):
    result = invoke("build", "--target", "synthetic-0.8.2", "--check", "--artifacts", str(full_build["artifacts"]))
    assert "outputs are bit-identical to outputs.lock.json" in result.stdout


def test_changed_weights_fail_the_check_naming_the_files(tmp_path):
    targets = tmp_path / "targets.toml"
    text = (PROJECT / "targets.toml").read_text()
    assert 'n_hidden = 64\n' in text
    targets.write_text(text.replace('n_hidden = 64\n', 'n_hidden = 64\nseed = 7\n', 1))
    result = invoke("build", "--target", "synthetic-small", "--check", "--artifacts", str(tmp_path / "a"),
                    env={TARGETS_ENV: str(targets)}, check=False)
    assert result.returncode != 0 and "not bit-identical" in result.stdout
    assert "ir/output_graph.bin: expected" in result.stdout and "frozen/output_graph.pb: expected" in result.stdout
    assert "Traceback" not in result.stdout


@pytest.mark.parametrize("host, refusal", [
    ("pypi.org", "socket.gaierror: [Errno -3] Temporary failure in name resolution"),  # no DNS
    ("151.101.0.223", "OSError: [Errno 101] Network is unreachable"),  # no route, even to an address
])
def test_stage_containers_have_no_network(docker, tmp_path, host, refusal):
    image = ensure_stage_image(docker, load_target(targets_file(), "synthetic-small").freeze_image, PROJECT)
    probe = f"import socket; socket.create_connection(({host!r}, 443), timeout=5)"
    with pytest.raises(ContainerError) as excinfo:
        run_stage(docker, step="network probe", image=image, args=["-c", probe], artifacts=tmp_path,
                         targets=targets_file(), entrypoint="python")
    assert refusal in excinfo.value.log_tail

