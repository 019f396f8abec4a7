"""The names and paths ds2ir accepts (paths.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ds2ir import paths
from ds2ir.errors import ConfigError, MissingInputError


@pytest.mark.parametrize("root", [Path("/srv/artifacts"), Path("artifacts")])
@pytest.mark.parametrize("names", [("..",), ("../victim",), ("/abs",), ("a", "..", ".."), (".",), ("",)])
def test_path_under_refuses_what_leaves_or_is_the_root(root: Path, names) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="leaves"):
        paths.path_under(root, *names)


def test_path_under_keeps_what_stays_inside() -> None:
    assert paths.path_under(Path("/srv/a"), "t", "ir") == Path("/srv/a/t/ir")


@pytest.mark.parametrize("name", ["deepspeech-0.8.2", "synthetic-small", "A_1", "x" * 128])
def test_good_names(name: str) -> None:
    assert paths.check_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "a..b", ".hidden", "-x", "a/b", "a\\b", "a b", "a\nb", "a\tb", "x" * 129, "é"])
def test_bad_names(name: str) -> None:
    with pytest.raises(ConfigError, match="is not allowed"):
        paths.check_name(name)


@pytest.mark.parametrize("name, ok", [("freeze-tf1.15.5", True), ("convert-ov2024.6-notf", True), ("Freeze", False),
                                      ("a..b", False), ("a-", False), ("a/b", False)])
def test_image_names_are_docker_repository_names(name: str, ok: bool) -> None:
    if ok:
        assert paths.check_image_name(name) == name
    else:
        with pytest.raises(ConfigError):
            paths.check_image_name(name)


def test_regular_file_names_what_the_path_is(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert paths.regular_file(tmp_path / "f", "input").st_size == 1
    with pytest.raises(MissingInputError, match="does not exist"):
        paths.regular_file(tmp_path / "absent", "input")
    with pytest.raises(MissingInputError, match="is a directory, not a regular file"):
        paths.regular_file(tmp_path, "input")
