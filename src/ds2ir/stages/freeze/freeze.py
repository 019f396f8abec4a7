"""Freeze a checkpoint into DeepSpeech's streaming inference graph (output_graph.pb).

Runs in the freeze image (TensorFlow 1.15). The checkpoint is checked against the
architecture first, so a wrong checkpoint fails with every difference listed instead
of TensorFlow's first NotFoundError.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence

from ds2ir import atomic
from ds2ir.errors import MissingInputError
from ds2ir.model.architecture import Alphabet, Architecture
from ds2ir.runner import Runner
from ds2ir.stages.freeze import checkpoint

#: what DeepSpeech's exporters (and Coqui STT's) write into --export_dir
EXPORTED_GRAPH = "output_graph.pb"


def alphabet_for(checkpoint_dir: Path, default: Alphabet) -> Alphabet:
    """The checkpoint's own alphabet.txt when it ships one (releases do), else ``default``."""
    path = checkpoint_dir / "alphabet.txt"
    return Alphabet.load(path) if path.is_file() else default


def freeze(checkpoint_dir: Path, output: Path, arch: Architecture, alphabet: Alphabet, *, lstm: str = "fused") -> None:
    """Restore the checkpoint into the inference graph and write it frozen, atomically."""
    import tensorflow.compat.v1 as tf

    from ds2ir.stages.freeze.graph import build_inference_graph

    prefix = checkpoint.find_prefix(checkpoint_dir)
    checkpoint.check(prefix, arch, alphabet)
    graph = tf.Graph()
    with graph.as_default():
        outputs = build_inference_graph(arch, alphabet, lstm=lstm)
        saver = tf.train.Saver({v.op.name: v for v in tf.global_variables()})
        graph.finalize()
        output_names = [tensor.op.name for tensor in outputs.values()]
        with tf.Session(graph=graph, config=checkpoint.single_thread_config()) as session:
            saver.restore(session, str(prefix))
            frozen = tf.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), output_names)
    frozen = tf.graph_util.extract_sub_graph(frozen, output_names)
    atomic.write_bytes(output, frozen.SerializeToString(deterministic=True))


def run_exporter(command: Sequence[str], runner: Runner, *, staging: Path, output: Path, step: str, missing: str,
                 cwd: Optional[Path] = None) -> None:
    """Run another project's exporter, whose ``command`` writes output_graph.pb into ``staging``
    (emptied first), and publish that graph atomically as ``output``; ``missing`` is the error
    when the exporter finishes without writing it."""
    if staging.exists():
        shutil.rmtree(str(staging))
    runner.run(list(command), step=step, cwd=cwd)
    exported = staging / EXPORTED_GRAPH
    if not exported.is_file():
        raise MissingInputError(missing)
    atomic.write_bytes(output, exported.read_bytes())
    shutil.rmtree(str(staging), ignore_errors=True)


def exporter_flags(arch: Architecture) -> List[str]:
    """``arch`` as command-line flags of DeepSpeech's (and Coqui STT's) own exporter:
    the ones its util/flags.py defines (n_input and n_context are constants there)."""
    return [
        "--n_hidden", str(arch.n_hidden),
        "--n_steps", str(arch.n_steps),
        "--relu_clip", str(arch.relu_clip),
        "--audio_sample_rate", str(arch.sample_rate),
        "--feature_win_len", str(arch.feature_win_len_ms),
        "--feature_win_step", str(arch.feature_win_step_ms),
        "--export_beam_width", str(arch.beam_width),
    ]
