"""Writes on a real full or read-only filesystem (a tmpfs mounted here): a StorageError, old files intact."""
from __future__ import annotations

import errno
import resource
import subprocess
import sys

import pytest

from ds2ir import atomic
from ds2ir.errors import ContainerError, StorageError
from tests._support.checkout import targets_file
from tests._support.faults import fill, remount_read_only, tmpfs


def test_full_filesystem_keeps_the_previous_file_and_says_how_to_fix_it(tmp_path):
    with tmpfs(tmp_path / "small", "1m") as disk:
        final = disk / "ir" / "output_graph.bin"
        atomic.write_bytes(final, b"previous, complete")
        fill(disk)
        with pytest.raises(StorageError) as caught:
            with atomic.storage_errors(disk):
                atomic.write_bytes(final, b"x" * 65536)
        assert "No space left on device" in str(caught.value) and "--artifacts" in str(caught.value)
        assert final.read_bytes() == b"previous, complete"
        assert sorted(p.name for p in final.parent.iterdir()) == ["output_graph.bin"]


def test_read_only_filesystem_is_reported_even_to_root(tmp_path):
    with tmpfs(tmp_path / "ro", "1m") as disk:
        with atomic.atomic_dir(disk / "ir") as tmp:
            (tmp / "output_graph.xml").write_text("previous")
        remount_read_only(disk)
        with pytest.raises(StorageError) as caught:
            with atomic.storage_errors(disk), atomic.atomic_dir(disk / "ir") as tmp:
                (tmp / "output_graph.xml").write_text("new")
        assert "Read-only file system" in str(caught.value) and str(disk / "ir") in str(caught.value)
        assert (disk / "ir" / "output_graph.xml").read_text() == "previous"


def test_other_os_errors_are_not_disguised(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic.storage_errors(tmp_path):
            (tmp_path / "missing").read_bytes()
    assert StorageError.from_os_error(OSError(errno.ENOENT, "gone"), "x") is None


def test_messages_name_the_final_file_not_its_temporary():
    assert atomic.final_name(f"/a/.ir{atomic.TEMP_MARK}x1y2/output_graph.bin") == "/a/ir/output_graph.bin"
    assert atomic.final_name(f"/a/ir/.output_graph.bin{atomic.TEMP_MARK}k3") == "/a/ir/output_graph.bin"


def test_a_killed_container_says_it_was_killed():
    error = ContainerError(step="convert", command=["docker", "run"], exit_code=137, log_tail="", image="i")
    assert "The container was killed" in str(error) and "run the build again" in str(error)


def test_compose_env_that_cannot_be_written_whole_leaves_the_previous_env(tmp_path):
    """A write cut short (here: a file-size limit) must not leave compose a half-written .env."""
    env_file = tmp_path / ".env"
    env_file.write_text("DS2IR_TARGET=previous\n")
    script = ("import sys; from pathlib import Path; from ds2ir.model.targets_file import load_target; "
              "from ds2ir.host.compose import write_env_file; write_env_file(Path(sys.argv[1]), load_target(Path(sys.argv[2]), 'synthetic-small'))")

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    result = subprocess.run([sys.executable, "-c", script, str(env_file), str(targets_file())], capture_output=True, text=True,
                            preexec_fn=limit_file_size)
    assert result.returncode != 0 and "File too large" in result.stderr
    assert env_file.read_text() == "DS2IR_TARGET=previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]
