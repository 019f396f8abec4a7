"""The stage commands the freeze image runs (TF 1.15, Python 3.7): checkpoint, training, freezing, the TF
reference and TF's side of `invoke verify`. ``python -m ds2ir`` (stages/cli.py) dispatches to them."""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional, cast

import numpy as np

from ds2ir import atomic
from ds2ir.errors import VerificationError
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target
from ds2ir.runner import Runner
from ds2ir.stages.recordings import recorded_inputs, zero_state


def make_checkpoint(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Write the target's seeded synthetic checkpoint (freeze image)."""
    from ds2ir.stages.freeze import checkpoint

    variables = checkpoint.synthetic_variables(target.architecture, target.alphabet, target.seed)
    checkpoint.save(layout.checkpoint_dir, variables, alphabet=target.alphabet, arch=target.architecture)


def train(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Overfit the architecture on the target's recording; save the checkpoint (freeze image)."""
    from ds2ir.stages.freeze.train import train_checkpoint

    assert target.training is not None, "only trained targets have a train stage"
    result = train_checkpoint(
        layout.checkpoint_dir, wav=layout.training_dir / "audio.wav", transcript_file=layout.training_dir / "transcript.txt",
        arch=target.architecture, alphabet=target.alphabet, seed=target.seed,
        epochs=target.training.epochs, learning_rate=target.training.learning_rate,
    )
    atomic.write_json(layout.training_report, result._asdict())
    print(json.dumps(result._asdict(), sort_keys=True))


def freeze(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Freeze the checkpoint into output_graph.pb with the target's exporter (or unpack the target's .pbmm),
    and memory-map it into output_graph.pbmm (freeze image)."""
    from ds2ir.model import pbmm
    from ds2ir.stages.freeze.freeze import alphabet_for
    from ds2ir.stages.freeze.freeze import freeze as freeze_graph

    alphabet = alphabet_for(layout.checkpoint_dir, target.alphabet)
    if target.checkpoint == "pbmm":
        pbmm.unpack_file(layout.model_file, layout.frozen_graph)
    elif target.exporter == "coqui-stt":
        from ds2ir.stages.freeze import coqui

        coqui.export(target, layout, alphabet, Runner())
    elif target.exporter == "deepspeech":
        from ds2ir.stages.freeze import upstream

        upstream.export(target, layout, alphabet, Runner())
    else:
        freeze_graph(layout.checkpoint_dir, layout.frozen_graph, target.architecture, alphabet, lstm=target.lstm)
    pbmm.pack_file(layout.frozen_graph, layout.frozen_pbmm)


def reference(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream seeded random windows through the frozen graph and its float64 ground truth; keep inputs, outputs
    and the kernels this CPU gives TF and numpy (freeze image)."""
    from ds2ir.model import cpu
    from ds2ir.model.verify import random_inputs, stream
    from ds2ir.stages import ground_truth
    from ds2ir.stages.tf_runtime import TFStreamingModel

    inputs = random_inputs(target.architecture, target.seed)
    model = TFStreamingModel(layout.frozen_graph, target.architecture.n_steps)
    try:
        outputs = stream(model, inputs["windows"], inputs["state_c"], inputs["state_h"])
    finally:
        model.close()
    exact = stream(ground_truth.from_frozen_graph(layout.frozen_graph, target.architecture), inputs["windows"],
                   inputs["state_c"], inputs["state_h"])
    host = cpu.describe()
    engine = {"cpu": host, "tensorflow": cpu.tensorflow_gemm_isa(cast(List[str], host["vector_extensions"])),
              "numpy_openblas": cpu.openblas_core()}
    with atomic.atomic_path(layout.check_reference) as tmp:
        with open(tmp, "wb") as handle:
            arrays: Dict[str, Any] = {**inputs, **{"tf_" + k: v for k, v in outputs.items()},
                                     **{"f64_" + k: v for k, v in exact.items()}}
            np.savez(handle, engine=np.array(json.dumps(engine, sort_keys=True)), **arrays)


def inspect_graph(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Print the frozen graph's nodes as JSON (freeze image)."""
    from ds2ir.stages.tf_runtime import graph_node_names

    print(json.dumps(graph_node_names(layout.frozen_graph), sort_keys=True))


def verify_tf(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Stream each prepared recording through the frozen graph and its float64 ground truth; check features
    against TF's ops (freeze image)."""
    from ds2ir.model.verify import stream
    from ds2ir.stages import ground_truth, tf_features
    from ds2ir.stages.tf_runtime import TFStreamingModel

    arch = target.architecture
    model = TFStreamingModel(layout.frozen_graph, arch.n_steps)
    exact_model = ground_truth.from_frozen_graph(layout.frozen_graph, arch)
    try:
        with atomic.atomic_dir(layout.verify_dir / "tf") as out:
            for name, data in recorded_inputs(layout):
                outputs = stream(model, data["windows"], *zero_state(arch))
                exact = stream(exact_model, data["windows"], *zero_state(arch))
                delta = tf_features.max_abs_difference(data["samples"], arch)
                with open(out / f"{name}.npz", "wb") as handle:
                    arrays: Dict[str, Any] = {**outputs, **{"f64_" + k: v for k, v in exact.items()}}
                    np.savez(handle, features_max_abs=np.float64(delta), **arrays)
    finally:
        model.close()


def check_pbmm(target: Target, layout: ArtifactLayout, args: argparse.Namespace) -> None:
    """Prove output_graph.pbmm: unpacked, its constants equal output_graph.pb's bit for bit, and DeepSpeech's
    native client transcribes --audio alike from both files (freeze image)."""
    import deepspeech
    import tensorflow.compat.v1 as tf

    from ds2ir.model import pbmm
    from ds2ir.model.audio import read_wav

    unpacked, frozen = tf.GraphDef(), tf.GraphDef()
    unpacked.ParseFromString(pbmm.unpack(layout.frozen_pbmm.read_bytes(), str(layout.frozen_pbmm)))
    frozen.ParseFromString(layout.frozen_graph.read_bytes())
    constants = {graph: {node.name: tf.make_ndarray(node.attr["value"].tensor) for node in graph_def.node if node.op == "Const"}
                 for graph, graph_def in (("pbmm", unpacked), ("pb", frozen))}
    differing = sorted(name for name in set(constants["pb"]) | set(constants["pbmm"])
                       if not _same_bits(constants["pb"].get(name), constants["pbmm"].get(name)))
    samples = read_wav(args.audio, sample_rate=target.architecture.sample_rate)
    pcm = np.clip(np.round(samples.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    transcripts = {kind: deepspeech.Model(str(path)).stt(pcm) for kind, path in (("pb", layout.frozen_graph),
                                                                                   ("pbmm", layout.frozen_pbmm))}
    result = {"constants": len(constants["pb"]), "memory_mapped": len(pbmm.read_directory(
                  layout.frozen_pbmm.read_bytes(), str(layout.frozen_pbmm))) - 1,
              "differing_constants": differing, "graph_def_identical": unpacked == frozen,
              "transcripts": transcripts, "native_client": deepspeech.version()}
    print(json.dumps(result, sort_keys=True))
    if differing or transcripts["pb"] != transcripts["pbmm"]:
        raise VerificationError(f"{layout.frozen_pbmm} does not hold the graph of {layout.frozen_graph}: constants "
                                f"{differing or 'equal'}, native client transcripts {transcripts}.")


def _same_bits(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    """Equal dtype, shape and bytes (strings compared as bytes: an object array's buffer holds pointers)."""
    if a is None or b is None or a.dtype != b.dtype or a.shape != b.shape:
        return False
    return a.tolist() == b.tolist() if a.dtype == object else a.tobytes() == b.tobytes()
