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
