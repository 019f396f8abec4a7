"""What atomic writes promise beyond the final name: data synced before it is published, the
renameat2 exchange and its fallback, cleanup of what an interrupted run left, exact JSON text.
(Mutation testing found these unpinned.)"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
from pathlib import Path
from typing import List

import pytest

from ds2ir import atomic


@pytest.fixture(autouse=True)
def private_cwd(tmp_path, monkeypatch):
    """A relative path a bug produced (str(None) is 'None') lands here, where the tests look."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def synced(monkeypatch) -> List[str]:
    """The paths os.fsync flushed, in order."""
    paths: List[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


def test_a_file_is_synced_before_its_rename_and_its_directory_after(tmp_path, synced):
    final = tmp_path / "out" / "a.bin"
    with atomic.atomic_path(final) as tmp:
        tmp.write_bytes(b"data")
    assert synced == [str(tmp), str(final.parent)]


def test_every_file_and_directory_of_a_new_tree_is_synced_content_first_then_the_parent(tmp_path, synced):
    final = tmp_path / "out" / "tree"
    with atomic.atomic_dir(final) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a").write_bytes(b"a")
        (tmp / "b").write_bytes(b"b")
        (tmp / "link").symlink_to("b")  # a link is not synced (its target is, as a file of the tree)
        staged = tmp
    assert synced == [str(staged / "sub" / "a"), str(staged / "sub"), str(staged / "b"), str(staged), str(final.parent)]
    synced.clear()
    with atomic.atomic_dir(final) as tmp:  # replacing a tree: the same, then the parent once
        (tmp / "c").write_bytes(b"c")
        staged = tmp
    assert synced == [str(staged / "c"), str(staged), str(final.parent)]
    assert sorted(p.name for p in final.iterdir()) == ["c"] and sorted(os.listdir(str(tmp_path))) == ["out"]


def test_files_are_synced_through_read_only_descriptors_and_directories_as_directories(tmp_path, monkeypatch):
    """Read-only: a file the user may not write (a checkpoint's) is synced all the same."""
    opened = []
    real = os.fsync

    def fsync(fd: int) -> None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        opened.append((os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), flags & os.O_ACCMODE, bool(flags & os.O_DIRECTORY)))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic.atomic_dir(tmp_path / "tree") as tmp:
        (tmp / "a").write_bytes(b"a")
    assert opened == [("a", os.O_RDONLY, False), (tmp.name, os.O_RDONLY, True), (tmp_path.name, os.O_RDONLY, True)]


def test_write_json_writes_this_exact_text(tmp_path):
    path = tmp_path / "m.json"
    atomic.write_json(path, {"b": 1, "a": [2, "é"]})
    assert path.read_bytes() == b'{\n  "a": [\n    2,\n    "\\u00e9"\n  ],\n  "b": 1\n}\n'


def test_files_and_directories_get_the_permissions_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic.atomic_path(tmp_path / "f") as tmp:
            tmp.write_bytes(b"x")
        with atomic.atomic_dir(tmp_path / "d") as tmp:
            pass
        assert os.umask(0o027) == 0o027  # the umask is as it was
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640 and (tmp_path / "d").stat().st_mode & 0o777 == 0o750


def test_a_tree_replaces_another_in_one_exchange_without_any_rename(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_LIBC", None)  # found again, as in a new process
    final = tmp_path / "ir"
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("old")

    def no_rename(src, dst):
        raise AssertionError(f"os.rename({src}, {dst}): the exchange should have done it")

    monkeypatch.setattr(os, "rename", no_rename)
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("new")
    assert (final / "a").read_text() == "new" and sorted(os.listdir(str(tmp_path))) == ["ir"]
    assert atomic._libc() is atomic._libc()  # loaded once


def test_exchange_swaps_two_names_given_relative_to_the_working_directory(tmp_path):
    Path("a").mkdir()
    Path("b").write_text("b")
    assert atomic._exchange(Path("a"), Path("b")) is True
    assert Path("a").read_text() == "b" and Path("b").is_dir()


def test_exchange_reports_a_missing_name_with_both_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_LIBC", None)  # loaded afresh: its errno is what the call left
    Path("a").mkdir()
    with pytest.raises(OSError) as excinfo:
        atomic._exchange(Path("a"), Path("missing"))
    error = excinfo.value
    assert (error.errno, error.strerror, error.filename, error.filename2) == (
        errno.ENOENT, os.strerror(errno.ENOENT), "a", "missing")


class FakeLibc:
    """A C library whose renameat2 fails with ``code`` (or that has none: ``code`` None)."""

    def __init__(self, code):
        if code is not None:
            def renameat2(*args):
                ctypes.set_errno(code)
                return -1
            self.renameat2 = renameat2


@pytest.mark.parametrize("code", [None, errno.ENOSYS, errno.EINVAL])
def test_without_an_exchange_the_fallback_swap_parks_the_old_tree_beside_it_and_leaves_nothing(tmp_path, monkeypatch, code):
    monkeypatch.setattr(atomic, "_LIBC", FakeLibc(code))
    parent = tmp_path / "p"
    final = parent / f"v{atomic.TEMP_MARK}1"  # a final name may hold the mark
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("old")
    assert atomic._exchange(final, parent) is False
    renames = []
    real = os.rename

    def rename(src, dst):
        renames.append((src, dst))
        real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("new")
    suffix = tmp.name.rsplit(atomic.TEMP_MARK, 1)[1]
    parked = str(parent / f".{final.name}{atomic.OLD_MARK}{suffix}")  # where remove_stale_temporaries looks
    assert renames == [(str(final), parked), (str(tmp), str(final)), (parked, str(tmp))]
    assert (final / "a").read_text() == "new"
    assert os.listdir(str(parent)) == [final.name] and os.listdir(str(tmp_path)) == ["p"]


def test_an_exchange_that_fails_otherwise_is_an_error(monkeypatch):
    monkeypatch.setattr(atomic, "_LIBC", FakeLibc(errno.EXDEV))
    with pytest.raises(OSError) as excinfo:
        atomic._exchange(Path("x"), Path("y"))
    assert excinfo.value.errno == errno.EXDEV


def test_a_parked_tree_whose_name_holds_the_mark_goes_back_under_its_whole_name(tmp_path):
    name = f"v{atomic.OLD_MARK}1"  # a final name may contain the mark itself
    parked = tmp_path / f".{name}{atomic.OLD_MARK}x1"
    parked.mkdir()
    (parked / "a").write_text("old")
    atomic.remove_stale_temporaries(tmp_path)
    assert os.listdir(str(tmp_path)) == [name] and (tmp_path / name / "a").read_text() == "old"


def test_a_parked_tree_is_removed_once_its_final_name_exists_again(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "a").write_text("new")
    parked = tmp_path / f".ir{atomic.OLD_MARK}x1"
    (parked / "sub").mkdir(parents=True)
    (parked / "sub" / "a").write_text("old")
    atomic.remove_stale_temporaries(tmp_path)
    assert os.listdir(str(tmp_path)) == ["ir"] and (tmp_path / "ir" / "a").read_text() == "new"


def test_only_directories_are_ever_put_back(tmp_path):
    (tmp_path / f".ir{atomic.OLD_MARK}x1").write_text("a file with a parked tree's name")
    (tmp_path / f".bin{atomic.OLD_MARK}x1").symlink_to(tmp_path)
    atomic.remove_stale_temporaries(tmp_path)
    assert not (tmp_path / "ir").exists() and not (tmp_path / "bin").exists()


def test_a_temporary_that_cannot_be_removed_does_not_stop_the_cleanup(tmp_path, monkeypatch):
    (tmp_path / f".ir{atomic.TEMP_MARK}a").mkdir()  # say, a mount point a container left
    (tmp_path / f".m.json{atomic.TEMP_MARK}b").write_text("partial")

    def busy(path, *args, **kwargs):
        raise OSError(errno.EBUSY, "busy", str(path))

    monkeypatch.setattr(os, "rmdir", busy)
    atomic.remove_stale_temporaries(tmp_path)
    monkeypatch.undo()
    assert os.listdir(str(tmp_path)) == [f".ir{atomic.TEMP_MARK}a"]


def test_cleanup_of_a_missing_directory_does_nothing(tmp_path):
    atomic.remove_stale_temporaries(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("path, final", [
    ("d/.ir.tmp-x1/a.bin", "d/ir/a.bin"),
    ("d/.cache/a.bin", "d/.cache/a.bin"),  # hidden, not a temporary
    ("d/x.tmp-1/a", "d/x.tmp-1/a"),  # the mark, but not hidden: a user's name
    (".m.json.tmp-q", "m.json"),
])
def test_final_name_undoes_only_temporary_names(path, final):
    assert atomic.final_name(path) == final
