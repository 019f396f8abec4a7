"""The builtin exporter writes DeepSpeech v0.8.2's own graph, and mo makes the OpenVINO guide's IR of it.

The reference (data/deepspeech-0.8.2-export-synthetic-small.json) was recorded once from genuine
``DeepSpeech.py --export_dir`` on synthetic-small's checkpoint (its "about" says how): the genuine
source cannot be downloaded here, so the tests compare with that record, and with ds_ctcdecoder
(the library DeepSpeech's exporter takes ``metadata_alphabet`` from) in the app image.
"""
from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Dict

import pytest

from ds2ir.host.docker import Docker
from ds2ir.host.images import ensure_stage_image
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file
from tests._support.stages import run_stage
from tests.e2e.helpers import PROJECT, invoke, last_json

TARGET = "synthetic-small"
REFERENCE = json.loads((Path(__file__).parent / "data" / "deepspeech-0.8.2-export-synthetic-small.json").read_text())
#: the guide's Model Optimizer command (docs.openvino.ai, "Converting a TensorFlow DeepSpeech Model"), widths for
#: n_hidden 64, plus the FP32 choice every mo release accepts; run where output_graph.pb is, as the guide does
GUIDE_MO = (
    'mo --input_model output_graph.pb '
    '--input "input_lengths->[16],input_node[1,16,19,26],previous_state_h[1,64],previous_state_c[1,64]" '
    '--output "cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/GatherNd_1,'
    'cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/GatherNd,logits" '
    '--compress_to_fp16=False'
)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> ArtifactLayout:
    """synthetic-small's IR made by `invoke convert` (builtin exporter, mo) from an empty artifacts directory."""
    artifacts = tmp_path_factory.mktemp("small")
    invoke("convert", "--target", TARGET, "--artifacts", str(artifacts))
    return ArtifactLayout(artifacts, TARGET)


def _run(docker: Docker, stage: str, artifacts: Path, entrypoint: str, args: list) -> str:
    target = load_target(targets_file(), TARGET)
    spec = {"freeze": target.freeze_image, "convert": target.convert_image, "app": target.application_image}[stage]
    return run_stage(docker, step=f"{stage} check", image=ensure_stage_image(docker, spec, PROJECT), args=args,
                     artifacts=artifacts, targets=targets_file(), capture=True, entrypoint=entrypoint)


def test_frozen_graph_is_deepspeech_exporters_node_for_node(docker, small):
    """Every node (name, op, device, in order), every metadata value and, serialized deterministically, every
    byte of the GraphDef equal genuine DeepSpeech.py's export of the same checkpoint."""
    dumped = last_json(_run(docker, "freeze", small.root, "python", ["-c", textwrap.dedent(f"""
        import hashlib, json, warnings
        warnings.simplefilter("ignore")
        import tensorflow.compat.v1 as tf
        from tensorflow.python.framework import tensor_util
        raw = open("/artifacts/{TARGET}/frozen/output_graph.pb", "rb").read()
        graph = tf.GraphDef()
        graph.ParseFromString(raw)
        metadata = {{}}
        for node in graph.node:
            if node.name.startswith("metadata_"):
                value = tensor_util.MakeNdarray(node.attr["value"].tensor).tolist()[0]
                if isinstance(value, bytes):
                    value = value.hex() if node.name == "metadata_alphabet" else value.decode("utf-8")
                metadata[node.name] = value
        print(json.dumps({{"nodes": [[n.name, n.op, n.device] for n in graph.node], "metadata": metadata,
                          "canonical": graph.SerializeToString(deterministic=True) == raw}}))
    """)]))
    assert dumped["nodes"] == REFERENCE["nodes"]
    assert ["raw_logits", "Reshape", ""] in dumped["nodes"] and ["layer_1/weights/read", "Identity", "/device:CPU:0"] in dumped["nodes"]
    assert dumped["metadata"] == REFERENCE["metadata"]
    assert dumped["metadata"]["metadata_language"].startswith("<language the model was trained on")
    assert dumped["canonical"] is True  # ds2ir writes the deterministic serialization...
    assert hashlib.sha256(small.frozen_graph.read_bytes()).hexdigest() == REFERENCE["sha256_deterministic"]  # ...of upstream's graph


def test_mo_makes_the_guides_ir_byte_for_byte(docker, small):
    """The OpenVINO guide's procedure (its mo command, in the directory of output_graph.pb) on the same graph
    writes the .xml and .bin that `invoke build` published: mo records only the arguments it is given."""
    guide = small.root / "guide"
    _run(docker, "convert", small.root, "sh", ["-c", (
        f"set -e; mkdir /tmp/deepspeech; cd /tmp/deepspeech; cp /artifacts/{TARGET}/frozen/output_graph.pb .; "
        f"{GUIDE_MO} >/dev/null; mkdir /artifacts/guide; cp output_graph.xml output_graph.bin /artifacts/guide/")])
    for suffix in (".xml", ".bin"):
        ours = small.ir_xml.with_suffix(suffix).read_bytes()
        assert ours == (guide / ("output_graph" + suffix)).read_bytes(), suffix
    xml = small.ir_xml.read_text()
    assert 'name="raw_logits"' in xml and "output_dir" not in xml and "model_name" not in xml


def test_metadata_alphabet_bytes_are_ds_ctcdecoders(docker, tmp_path):
    """Alphabet.parse + serialize give the bytes ds_ctcdecoder's Alphabet writes from the same file, for every size
    up to 70 labels, larger ones up to the uint16 limit, and lines alphabet.cc reads specially (checked by hand
    against ds_ctcdecoder 0.8.2 too: the same orders)."""
    mismatches: Dict[str, object] = last_json(_run(docker, "app", tmp_path, "python", ["-c", textwrap.dedent("""
        import json, tempfile
        from pathlib import Path
        import ds_ctcdecoder
        from ds2ir.model.architecture import Alphabet
        texts = {str(n): "".join(f"l{i}\\n" for i in range(n)) for n in [*range(1, 71), 100, 1000, 5000, 65535]}
        texts["lines"] = "# comment\\n\\\\#\\n\\na\\r\\nb\\rc\\n\\\\#x\\n \\n'"
        texts["release"] = Alphabet.default().to_text()
        mismatches = {}
        for name, text in texts.items():
            with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", newline="", delete=False) as handle:
                handle.write(text)
            theirs = bytes(ds_ctcdecoder.Alphabet(handle.name).Serialize())
            ours = Alphabet.load(Path(handle.name)).serialize()
            if ours != theirs:
                mismatches[name] = [ours[:40].hex(), theirs[:40].hex()]
        print(json.dumps(mismatches))
    """)]))
    assert mismatches == {}
