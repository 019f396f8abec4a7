"""Checkpoints in the DeepSpeech release layout: find, check and (synthetically) make them.

The release layout is ``best_dev-N.{index,data-*}``, the state files ``best_dev_checkpoint``
and ``checkpoint``, ``flags.txt`` and ``alphabet.txt``. Finding the prefix is plain
Python (works on the host); checking and writing need TensorFlow (the freeze image).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Tuple

import numpy as np

from ds2ir import atomic
from ds2ir.errors import CheckpointError, MissingInputError
from ds2ir.model.architecture import Alphabet, Architecture, model_variables

STATE_FILES = ("best_dev_checkpoint", "checkpoint")
BEST_DEV = "best_dev"
# Slots and counters a training checkpoint carries that the exporter does not restore.
_IGNORED = re.compile(r"(/Adam(_\d+)?$|^beta[12]_power$|^global_step$|^learning_rate$)")


def find_prefix(directory: Path) -> Path:
    """The checkpoint prefix named by the release's state files (or the only one there).

    State files written on the training machine may hold absolute paths from that
    machine, so only the base name is used, looked up in ``directory``.
    """
    if not directory.is_dir():
        raise MissingInputError(f"The checkpoint directory {directory} does not exist.")
    for state in STATE_FILES:
        path = directory / state
        if path.is_file():
            match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', path.read_text(errors="replace"), re.M)
            if match:
                prefix = directory / Path(match.group(1)).name
                if prefix.with_name(prefix.name + ".index").is_file():
                    return prefix
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    found = ", ".join(p.name for p in indexes) or "none"
    raise MissingInputError(
        f"No usable checkpoint in {directory}: expected a 'best_dev_checkpoint' or 'checkpoint' state file "
        f"naming a prefix with its .index file (index files found: {found}). Put the extracted release "
        f"checkpoint there, or rebuild it."
    )


def compare_variables(
    found: Mapping[str, Tuple[int, ...]], expected: Iterable[Tuple[str, Tuple[int, ...]]]
) -> List[str]:
    """Every difference between a checkpoint's variables and the model's, as text."""
    problems = []
    for name, shape in expected:
        if name not in found:
            problems.append(f"missing variable {name} (expected shape {list(shape)})")
        elif tuple(found[name]) != tuple(shape):
            problems.append(f"variable {name} has shape {list(found[name])}, expected {list(shape)}")
    return problems


def check(prefix: Path, arch: Architecture, alphabet: Alphabet) -> None:
    """Raise one CheckpointError listing every missing or mis-shaped variable."""
    import tensorflow.compat.v1 as tf

    try:
        found = {name: tuple(shape) for name, shape in tf.train.list_variables(str(prefix))}
    except (tf.errors.OpError, ValueError) as exc:
        raise CheckpointError(
            f"Cannot read the checkpoint {prefix}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}. "
            f"The files are corrupt or incomplete: fetch or rebuild the checkpoint."
        ) from exc
    expected = [(v.name, v.shape) for v in model_variables(arch, alphabet.n_classes)]
    problems = compare_variables({k: v for k, v in found.items() if not _IGNORED.search(k)}, expected)
    if problems:
        raise CheckpointError(
            f"The checkpoint {prefix} does not match the target's architecture (n_hidden {arch.n_hidden}, "
            f"{alphabet.n_classes} classes): " + "; ".join(problems) + ". Use the checkpoint of the target's "
            "release or fix the target's architecture keys in targets.toml."
        )


def glorot_variables(arch: Architecture, n_classes: int, seed: int, *, bias_limit: float) -> Dict[str, np.ndarray]:
    """Seeded values for every model variable: Glorot-uniform weights (DeepSpeech's
    initialiser), biases uniform in ±bias_limit (zero draws nothing)."""
    rng = np.random.RandomState(seed)
    values = {}
    for var in model_variables(arch, n_classes):
        if len(var.shape) == 2:
            limit = np.sqrt(6.0 / (var.shape[0] + var.shape[1]))
            values[var.name] = rng.uniform(-limit, limit, size=var.shape).astype(np.float32)
        elif bias_limit:
            values[var.name] = rng.uniform(-bias_limit, bias_limit, size=var.shape).astype(np.float32)
        else:
            values[var.name] = np.zeros(var.shape, np.float32)
    return values


def synthetic_variables(arch: Architecture, alphabet: Alphabet, seed: int) -> Dict[str, np.ndarray]:
    """Seeded weights with the release's names and shapes, standing in for a trained model.

    Small random biases (not zeros) keep every unit distinct; with Glorot weights the
    activations stay in a realistic range: neither all clipped at relu_clip nor all zero.
    """
    return glorot_variables(arch, alphabet.n_classes, seed, bias_limit=0.1)


def save(
    directory: Path,
    variables: Mapping[str, np.ndarray],
    *,
    alphabet: Alphabet,
    arch: Architecture,
    global_step: int = 1,
) -> Path:
    """Write ``variables`` as a checkpoint in the release layout, atomically."""
    import tensorflow.compat.v1 as tf

    graph = tf.Graph()
    with graph.as_default():
        feeds = {}
        to_save = {}
        for index, (name, value) in enumerate(sorted(variables.items())):
            placeholder = tf.placeholder(tf.as_dtype(value.dtype), value.shape)
            variable = tf.Variable(placeholder, name=f"v{index}")
            feeds[variable.initializer] = {placeholder: value}
            to_save[name] = variable
        step = tf.Variable(np.int64(global_step), name="global_step")
        to_save["global_step"] = step
        saver = tf.train.Saver(to_save, save_relative_paths=True)
        with tf.Session(graph=graph, config=single_thread_config()) as session, atomic.atomic_dir(directory) as tmp:
            session.run(step.initializer)
            for initializer, feed in feeds.items():
                session.run(initializer, feed)
            saver.save(session, str(tmp / BEST_DEV), global_step=global_step,
                       latest_filename=STATE_FILES[0], write_meta_graph=False)
            (tmp / STATE_FILES[1]).write_text((tmp / STATE_FILES[0]).read_text())
            (tmp / "alphabet.txt").write_text(alphabet.to_text(), encoding="utf-8")
            (tmp / "flags.txt").write_text(
                f"--n_hidden={arch.n_hidden}\n--n_steps={arch.n_steps}\n--relu_clip={arch.relu_clip}\n"
                f"--audio_sample_rate={arch.sample_rate}\n--feature_win_len={arch.feature_win_len_ms}\n"
                f"--feature_win_step={arch.feature_win_step_ms}\n"
            )
    return find_prefix(directory)


def single_thread_config() -> Any:  # a tf.ConfigProto (TensorFlow is imported only here)
    """A TF session config with one thread per pool: same op order, same bytes, every run."""
    import tensorflow.compat.v1 as tf

    return tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
