import errno
import os
import threading
from pathlib import Path

import pytest

from ds2ir import atomic


def test_atomic_path_publishes_only_on_success(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []
    atomic.write_bytes(final, b"whole")
    assert final.read_bytes() == b"whole"


def test_atomic_dir_keeps_the_old_tree_on_failure(tmp_path):
    final = tmp_path / "ir"
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(final) as tmp:
            (tmp / "a").write_text("new, half")
            raise RuntimeError("disk full")
    assert (final / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"]
    with atomic.atomic_dir(final) as tmp:
        (tmp / "b").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"]


def test_write_json_is_sorted_and_stable(tmp_path):
    path = tmp_path / "m.json"
    atomic.write_json(path, {"b": 1, "a": [2, 1]})
    first = path.read_bytes()
    atomic.write_json(path, {"a": [2, 1], "b": 1})
    assert path.read_bytes() == first and first.index(b'"a"') < first.index(b'"b"')


def test_remove_stale_temporaries_spares_final_names(tmp_path):
    (tmp_path / "frozen").mkdir()
    (tmp_path / "frozen" / "output_graph.pb").write_text("good")
    (tmp_path / "frozen" / ".output_graph.pb.tmp-abc").write_text("partial")
    (tmp_path / ".ir.tmp-xyz").mkdir()
    atomic.remove_stale_temporaries(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["frozen", "frozen/output_graph.pb"]


def test_a_reader_never_finds_the_final_directory_missing_during_swaps(tmp_path):
    final = tmp_path / "ir"
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("0")
    missing = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if not os.path.isdir(str(final)):
                missing.append(1)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for index in range(400):
            with atomic.atomic_dir(final) as tmp:
                (tmp / "a").write_text(str(index))
    finally:
        stop.set()
        reader.join()
    assert not missing, f"the final name was missing {len(missing)} times"
    assert (final / "a").read_text() == "399"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"]


def test_a_failed_exchange_leaves_the_old_tree_under_its_name(tmp_path, monkeypatch):
    final = tmp_path / "ir"
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("old")

    def fail(a, b):
        raise OSError(errno.EIO, "injected", str(a))

    monkeypatch.setattr(atomic, "_exchange", fail, raising=False)
    with pytest.raises(OSError, match="injected"):
        with atomic.atomic_dir(final) as tmp:
            (tmp / "a").write_text("new")
    assert (final / "a").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"]


def test_the_fallback_swap_puts_the_old_tree_back_when_publishing_fails(tmp_path, monkeypatch):
    """Where renameat2 is missing: two renames; a failure of the second restores the old tree."""
    final = tmp_path / "ir"
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("old")
    real_rename, real_replace = os.rename, os.replace

    def failing(real):
        def move(src, dst):
            if Path(src).name.startswith(f".ir{atomic.TEMP_MARK}") and Path(dst) == final:
                raise OSError(errno.EIO, "injected", str(src))
            return real(src, dst)
        return move

    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False, raising=False)
    monkeypatch.setattr(os, "rename", failing(real_rename))
    monkeypatch.setattr(os, "replace", failing(real_replace))
    with pytest.raises(OSError, match="injected"):
        with atomic.atomic_dir(final) as tmp:
            (tmp / "a").write_text("new")
    monkeypatch.undo()
    assert (final / "a").read_text() == "old"
    atomic.remove_stale_temporaries(tmp_path)  # what the next build does first
    assert (final / "a").read_text() == "old"
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    with atomic.atomic_dir(final) as tmp:
        (tmp / "a").write_text("new")
    assert (final / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"]


def test_a_tree_parked_by_an_interrupted_fallback_swap_is_put_back_not_deleted(tmp_path):
    parked = tmp_path / f".ir{atomic.OLD_MARK}x1y2"
    parked.mkdir()
    (parked / "a").write_text("old")
    (tmp_path / f".ir{atomic.TEMP_MARK}x1y2").mkdir()  # the new tree, never published
    atomic.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir"]
    assert (tmp_path / "ir" / "a").read_text() == "old"
