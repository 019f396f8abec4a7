"""Writes on a real full or read-only filesystem (a tmpfs mounted here): a StorageError, old files intact."""
from __future__ import annotations

import errno

import pytest

from ds2ir import atomic
from ds2ir.errors import ContainerError, StorageError
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
