import pytest

from ds2ir.errors import MissingInputError
from ds2ir.stages.freeze.checkpoint import compare_variables, find_prefix


def _release_layout(directory, state_path):
    directory.mkdir()
    (directory / "best_dev-732522.index").write_bytes(b"")
    (directory / "best_dev-732522.data-00000-of-00001").write_bytes(b"")
    (directory / "best_dev_checkpoint").write_text(f'model_checkpoint_path: "{state_path}"\n')


def test_find_prefix_ignores_the_training_machines_directory(tmp_path):
    ckpt = tmp_path / "ckpt"
    _release_layout(ckpt, "/home/someone/.local/share/deepspeech/checkpoints/best_dev-732522")
    assert find_prefix(ckpt) == ckpt / "best_dev-732522"


def test_find_prefix_falls_back_to_the_only_index(tmp_path):
    ckpt = tmp_path / "ckpt"
    _release_layout(ckpt, "best_dev-1")  # names a prefix that is not there
    assert find_prefix(ckpt) == ckpt / "best_dev-732522"


def test_find_prefix_explains_an_empty_directory(tmp_path):
    with pytest.raises(MissingInputError, match="No usable checkpoint"):
        find_prefix(tmp_path)
    with pytest.raises(MissingInputError, match="does not exist"):
        find_prefix(tmp_path / "absent")


def test_compare_variables_lists_every_difference():
    expected = [("a/weights", (4, 2)), ("a/bias", (2,)), ("b/bias", (3,))]
    found = {"a/weights": (4, 3), "b/bias": (3,), "extra": (1,)}
    assert compare_variables(found, expected) == [
        "variable a/weights has shape [4, 3], expected [4, 2]",
        "missing variable a/bias (expected shape [2])",
    ]
