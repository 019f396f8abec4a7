from pathlib import Path

import pytest

from ds2ir.errors import ConfigError
from ds2ir.model.architecture import Alphabet
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import TargetsFile, load_target
from ds2ir.stages.convert import mo_arguments
from tests._support.checkout import CHECKOUT, targets_file

# as OpenVINO's DeepSpeech guide writes it (mo records the text in the IR)
SEED_INPUT = "input_lengths->[16],input_node[1,16,19,26],previous_state_h[1,2048],previous_state_c[1,2048]"
SEED_OUTPUT = (
    "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/GatherNd_1,"
    "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/GatherNd,logits"
)


def test_mo_arguments_equal_the_seed_for_the_release_architecture():
    args = mo_arguments(load_target(targets_file(), "synthetic-0.8.2"))
    assert args[args.index("--input") + 1] == SEED_INPUT
    assert args[args.index("--output") + 1] == SEED_OUTPUT


def test_mo_arguments_follow_the_architecture():
    args = mo_arguments(load_target(targets_file(), "synthetic-small"))
    assert args[args.index("--input") + 1] == (
        "input_lengths->[16],input_node[1,16,19,26],previous_state_h[1,64],previous_state_c[1,64]"
    )


@pytest.mark.parametrize("name, flag", [("synthetic-0.8.2", "--compress_to_fp16=False"),
                                        ("synthetic-0.8.2@fp16", "--compress_to_fp16=True")])
def test_ir_precision_sets_fp16_compression(name, flag):
    arguments = mo_arguments(load_target(targets_file(), name))
    assert [a for a in arguments if a.startswith("--compress_to_fp16")] == [flag]


def test_release_architecture():
    target = load_target(targets_file(), "deepspeech-0.8.2")
    arch = target.architecture
    assert (arch.n_steps, arch.n_input, arch.n_context, arch.n_hidden) == (16, 26, 9, 2048)
    assert arch.input_shape == (1, 16, 19, 26)
    assert (arch.audio_window_samples, arch.audio_step_samples) == (512, 320)
    assert target.n_classes == 29
    assert target.checkpoint == "release"


def test_ldc93s1_smoke_builds_from_the_shipped_checkpoint_and_its_train_target_trains():
    smoke, train = load_target(targets_file(), "ldc93s1-smoke"), load_target(targets_file(), "ldc93s1-smoke-train")
    assert (smoke.checkpoint, smoke.training) == ("checkout", None)
    assert (CHECKOUT / smoke.checkpoint_path / "best_dev-300.index").is_file()
    assert train.checkpoint == "trained" and train.training.epochs == 300 and train.checkpoint_path is None
    assert load_target(targets_file(), "ldc93s1-smoke@hoisted-fp32").checkpoint_path == smoke.checkpoint_path


def test_extends_inherits_and_overrides():
    small = load_target(targets_file(), "synthetic-small")
    assert small.checkpoint == "synthetic" and small.architecture.n_hidden == 64
    assert small.freeze_image == load_target(targets_file(), "deepspeech-0.8.2").freeze_image


def _write(tmp_path: Path, text: str) -> Path:
    original = (CHECKOUT / "targets.toml").read_text()
    path = tmp_path / "targets.toml"
    path.write_text(original + text)
    return path


def test_unknown_target_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown target 'synthtic-0.8.2'.*Did you mean 'synthetic-0.8.2'"):
        load_target(targets_file(), "synthtic-0.8.2")


def test_typo_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, '\n[targets.typo]\nextends = "synthetic-small"\nn_hiden = 32\n')
    with pytest.raises(ConfigError) as excinfo:
        TargetsFile.load(path)
    message = str(excinfo.value)
    assert str(path) in message and "targets.typo.n_hiden" in message and "n_hidden" in message


@pytest.mark.parametrize("line, key", [
    ("n_hidden = 0", "targets.bad.n_hidden"),
    ('n_hidden = "big"', "targets.bad.n_hidden"),
    ('ir_precision = "FP8"', "targets.bad.ir_precision"),
    ('convert_image = "freeze-tf1.15.5"', "targets.bad.convert_image"),
    ('release = "9.9.9"', "targets.bad.release"),
])
def test_impossible_values_point_at_the_key(tmp_path, line, key):
    path = _write(tmp_path, f'\n[targets.bad]\nextends = "synthetic-small"\n{line}\n')
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        TargetsFile.load(path)


def test_extends_cycle_is_reported(tmp_path):
    path = _write(tmp_path, '\n[targets.a]\nextends = "b"\n[targets.b]\nextends = "a"\n')
    with pytest.raises(ConfigError, match="cycle"):
        TargetsFile.load(path)


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "targets.toml"
    path.write_text("[targets\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TargetsFile.load(path)


@pytest.mark.parametrize("old, new, key", [
    ('lock = "locks/freeze-tf1.15.5.txt"', 'lock = "/etc/freeze.txt"', "images.freeze-tf1.15.5.lock"),
    ('lock = "locks/freeze-tf1.15.5.txt"', 'lock = "../freeze.txt"', "images.freeze-tf1.15.5.lock"),
    ('lock = "locks/freeze-tf1.15.5.txt"', 'lock = "locks/freeze.in"', "images.freeze-tf1.15.5.lock"),
    ('python = "3.7"', 'python = "py37"', "images.freeze-tf1.15.5.python"),
    ('python = "3.7"', "python = 3.7", "images.freeze-tf1.15.5.python"),
])
def test_bad_image_lock_or_python_is_refused(tmp_path, old, new, key):
    text = (CHECKOUT / "targets.toml").read_text()
    assert old in text
    path = tmp_path / "targets.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        TargetsFile.load(path)


def test_alphabet_round_trip_and_serialization():
    alphabet = Alphabet.default()
    assert len(alphabet.labels) == 28 and alphabet.labels[0] == " " and alphabet.labels[-1] == "'"
    assert Alphabet.parse(alphabet.to_text()) == alphabet
    blob = alphabet.serialize()
    assert int.from_bytes(blob[:2], "little") == 28
    assert blob[2:7] == b"\x1b\x00\x01\x00'"  # index 27, length 1, "'": ds_ctcdecoder's hash-table order
    assert _entries(blob) == [(index, alphabet.labels[index]) for index in [*range(27, 12, -1), *range(13)]]


def _entries(blob: bytes) -> list:
    """(index, label) pairs of a serialized alphabet, in the order they are written."""
    entries, offset = [], 2
    for _ in range(int.from_bytes(blob[:2], "little")):
        index, length = int.from_bytes(blob[offset:offset + 2], "little"), int.from_bytes(blob[offset + 2:offset + 4], "little")
        entries.append((index, blob[offset + 4:offset + 4 + length].decode("utf-8")))
        offset += 4 + length
    assert offset == len(blob)
    return entries


@pytest.mark.parametrize("count, order", [
    (1, [0]),
    (13, list(range(12, -1, -1))),  # 13 buckets: every key first in the list as it comes
    (14, [13, *range(13)]),  # growing to 29 buckets reverses the list, then 13 comes first
    (30, [29, *range(12, -1, -1), *range(13, 29)]),  # 59 buckets: reversed again
])
def test_alphabet_order_is_libstdcxx_unordered_map_order(count, order):
    # The orders ds_ctcdecoder 0.9.3's Alphabet::Serialize writes (tests/e2e/test_upstream_graph.py checks up to 65535).
    alphabet = Alphabet(tuple(f"l{index}" for index in range(count)))
    assert [index for index, _ in _entries(alphabet.serialize())] == order


def test_alphabet_escaped_hash():
    alphabet = Alphabet.parse("# comment\n\\#\na\n")
    assert alphabet.labels == ("#", "a")
    assert Alphabet.parse(alphabet.to_text()) == alphabet


def test_alphabet_lines_as_ds_ctcdecoder_reads_them():
    # Empty lines are no labels, any line ending ends a line, and only a line "\#" is an escaped "#".
    assert Alphabet.parse("a\r\n\nb\rc\n\n\\#x\n d").labels == ("a", "b", "c", "\\#x", " d")


def test_layout_paths():
    layout = ArtifactLayout(Path("/a"), "t")
    assert layout.frozen_graph == Path("/a/t/frozen/output_graph.pb")
    assert layout.ir_xml == Path("/a/t/ir/output_graph.xml")
    assert layout.ir_bin == Path("/a/t/ir/output_graph.bin")
    assert layout.checkpoint_dir == Path("/a/t/checkpoint")


def test_version_swap_targets_share_images_and_change_only_what_they_name():
    base = load_target(targets_file(), "synthetic-0.8.2")
    ov2022 = load_target(targets_file(), "synthetic-0.8.2-ov2022.3")
    tf152 = load_target(targets_file(), "synthetic-0.8.2-tf1.15.2")
    assert ov2022.freeze_image == base.freeze_image and ov2022.convert_image.name == "convert-ov2022.3"
    assert tf152.convert_image == base.convert_image and tf152.freeze_image.name == "freeze-tf1.15.2"
    assert mo_arguments(ov2022) == mo_arguments(base) == mo_arguments(tf152)


def test_converter_and_exporter_defaults_and_choices():
    assert load_target(targets_file(), "synthetic-0.8.2").convert_image.converter == "mo"
    assert load_target(targets_file(), "synthetic-0.8.2").freeze_image.converter is None
    assert load_target(targets_file(), "synthetic-0.8.2").exporter == "builtin"
    assert load_target(targets_file(), "synthetic-0.8.2-notf").convert_image.converter == "tf-frontend"
    coqui = load_target(targets_file(), "coqui-stt-1.4.0")
    assert coqui.exporter == "coqui-stt" and coqui.release.checkpoint_url is None and coqui.checkpoint == "synthetic"


def test_ir_inputs_and_outputs_are_the_mo_cut():
    target = load_target(targets_file(), "synthetic-small")
    assert target.ir_inputs() == {"input_node": (1, 16, 19, 26), "previous_state_h": (1, 64), "previous_state_c": (1, 64)}
    args = mo_arguments(target)
    assert args[args.index("--output") + 1] == ",".join(target.ir_outputs())


@pytest.mark.parametrize("text, key", [
    ('\n[targets.x]\nextends = "synthetic-0.8.2"\nexporter = "tflite"\n', "targets.x.exporter"),
    ('\n[images.x]\nstage = "freeze"\ndockerfile = "D"\nbase_image = "b"\npython = "3.7"\nlock = "l.txt"\nconverter = "mo"\n',
     "images.x.converter"),
    ('\n[images.x]\nstage = "convert"\ndockerfile = "D"\nbase_image = "b"\npython = "3.7"\nlock = "l.txt"\nconverter = "onnx"\n',
     "images.x.converter"),
    ('\n[targets.x]\nextends = "coqui-stt-1.4.0"\ncheckpoint = "release"\n', "targets.x.checkpoint"),
    ('\n[targets.x]\nextends = "coqui-stt-1.4.0"\nlstm = "hoisted"\n', "targets.x.lstm"),
    ('\n[targets.x]\nextends = "synthetic-small"\ncheckpoint = "checkout"\n', "targets.x.checkpoint_path"),
    ('\n[targets.x]\nextends = "synthetic-small"\ncheckpoint = "checkout"\ncheckpoint_path = "../elsewhere"\n',
     "targets.x.checkpoint_path"),
])
def test_bad_exporter_converter_or_checkpoint_source_names_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as excinfo:
        TargetsFile.load(_write(tmp_path, text))
    assert excinfo.value.key == key


def test_matrix_lists_defined_targets(tmp_path):
    assert "synthetic-0.8.2-ov2022.3" in TargetsFile.load(targets_file()).matrix
    text = (CHECKOUT / "targets.toml").read_text().replace('"synthetic-0.8.2",', '"synthetic-0.8.9",', 1)
    path = tmp_path / "targets.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="'synthetic-0.8.9' is not a target") as excinfo:
        TargetsFile.load(path)
    assert excinfo.value.key == "matrix"


@pytest.mark.parametrize("line, key, message", [
    ("seed = -1", "seed", "seed must be a whole number from 0 to 2147483647, got -1"),
    ("seed = 1099511627776", "seed", "from 0 to 2147483647, got 1099511627776"),
    ("n_hidden = 4611686018427387904", "n_hidden", "from 1 to 8192"),
    ("sample_rate = 40", "sample_rate", "sample_rate must be a whole number from 8000 to 192000, got 40"),
    ("n_context = 1000000", "n_context", "from 0 to 64, got 1000000"),
    ("relu_clip = nan", "relu_clip", "relu_clip must be a finite number greater than 0 and at most 1e+06, got nan"),
    ("relu_clip = -1.0", "relu_clip", "greater than 0"),
    ("relu_clip = inf", "relu_clip", "got inf"),
    ("beam_width = -3", "beam_width", "beam_width must be a whole number from 1 to 100000, got -3"),
    ("feature_win_len_ms = 0", "feature_win_len_ms", "from 1 to 1000"),
    ("feature_win_step_ms = 40", "feature_win_step_ms", "longer than feature_win_len_ms"),
    ("description = 5", "description", "must be str, got 5"),
    ('checkpoint = "trained"\ntraining_audio = "data/LDC93S1.wav"\ntraining_transcript = "data/LDC93S1.txt"\n'
     "epochs = 3\nlearning_rate = nan", "learning_rate", "learning_rate must be a finite number greater than 0"),
    ('checkpoint = "trained"\ntraining_audio = "data/LDC93S1.wav"\ntraining_transcript = "data/LDC93S1.txt"\n'
     "epochs = 0\nlearning_rate = 0.1", "epochs", "epochs must be a whole number from 1 to 100000, got 0"),
    ('checkpoint = "trained"\ntraining_audio = "../../etc/passwd"\ntraining_transcript = "data/LDC93S1.txt"\n'
     "epochs = 1\nlearning_rate = 0.1", "training_audio", "relative path to a file inside the checkout"),
])
def test_every_value_is_range_checked_at_load_with_key_file_and_range(tmp_path, line, key, message):
    path = _write(tmp_path, f'\n[targets.bad]\nextends = "synthetic-small"\n{line}\n')
    with pytest.raises(ConfigError) as excinfo:
        TargetsFile.load(path)
    assert f"{path}: [targets.bad.{key}]: " in str(excinfo.value) and message in str(excinfo.value)


@pytest.mark.parametrize("old, new, key, message", [
    ('dockerfile = "Dockerfile.freeze"', 'dockerfile = "/etc/shadow"', "dockerfile", "relative path to a file inside"),
    ('dockerfile = "Dockerfile.freeze"', 'dockerfile = "../Dockerfile"', "dockerfile", "relative path to a file inside"),
    ('dockerfile = "Dockerfile.freeze"', 'dockerfile = "Dockerfile.none"', "dockerfile", "does not exist"),
    ('base_image = "python:3.7-slim"', 'base_image = "python:3.7-slim\\nINJECTED=1"', "base_image", "control character"),
    ('base_image = "python:3.7-slim"', 'base_image = "python 3.7"', "base_image", "image reference"),
    ('graph_version = 6', 'graph_version = 0', None, "graph_version must be a whole number from 1 to 1000"),
    ('source_url = "https://github.com/mozilla/DeepSpeech/archive/v0.8.2.tar.gz"',
     'source_url = "https://x/\\nX"', None, "http(s) URL without spaces"),
])
def test_image_and_release_values_are_checked(tmp_path, old, new, key, message):
    text = (CHECKOUT / "targets.toml").read_text()
    assert old in text
    path = tmp_path / "targets.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as excinfo:
        TargetsFile.load(path, project=CHECKOUT)
    assert message in str(excinfo.value)
    if key:
        assert f"[images.freeze-tf1.15.5.{key}]" in str(excinfo.value)


@pytest.mark.parametrize("table", ['targets."../victim"', 'targets."a/b"', 'targets.".."', 'targets."a b"',
                                   'targets."x\\ny"', 'targets."-x"', 'images."Freeze"', 'images."a/../b"'])
def test_target_and_image_names_follow_the_grammar(tmp_path, table):
    body = 'extends = "synthetic-small"' if table.startswith("targets") else (
        'stage = "freeze"\ndockerfile = "Dockerfile.freeze"\nbase_image = "python:3.7-slim"\npython = "3.7"\n'
        'lock = "locks/freeze-tf1.15.5.txt"')
    path = _write(tmp_path, f"\n[{table}]\n{body}\n")
    with pytest.raises(ConfigError, match="is not allowed"):
        TargetsFile.load(path)


def test_layout_refuses_a_name_that_leaves_the_root(tmp_path):
    for name in ("..", "../victim", "/abs", "a/b", "."):
        with pytest.raises(ConfigError):
            ArtifactLayout(tmp_path, name).target_dir
    assert ArtifactLayout(tmp_path, "synthetic-small").checkpoint_dir == tmp_path / "synthetic-small" / "checkpoint"
