"""Today's OpenVINO (2026.4.1, 2025.3.0) at n_hidden 64: the TF frontend without TensorFlow, the public converters (ovc, openvino.convert_model),
int8 with the current NNCF, and the application image on a current runtime, 2024.6 kept as a target."""
from __future__ import annotations

import json

import pytest

from ds2ir.host.manifest import LOCK_FILE_NAME
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import load_target
from tests._support.checkout import CHECKOUT, targets_file
from tests.e2e.helpers import invoke, last_json, stage_command

CELLS = ("synthetic-small-ovc", "synthetic-small-convert-model", "synthetic-small-ov2026.4@int8", "synthetic-small-ov2026.4")
WAV = CHECKOUT / "data" / "LDC93S1.wav"


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("current")
    invoke("matrix", *[arg for cell in CELLS for arg in ("--targets", cell)], "--artifacts", str(artifacts))
    return artifacts, json.loads((artifacts / "matrix" / "matrix.json").read_text())


def test_ovc_and_convert_model_make_an_ir_that_matches_tf(matrix):
    artifacts, result = matrix
    cells = {cell["target"]: cell for cell in result["cells"]}
    for name, converter in (("synthetic-small-ovc", "ovc"), ("synthetic-small-convert-model", "convert-model")):
        cell = cells[name]
        assert cell["passed"] and cell["converter"] == converter and cell["versions"]["openvino"] == "2026.4.1"
        assert cell["check"]["max_abs"] <= 1e-5
        record = json.loads((ArtifactLayout(artifacts, name).ir_dir / "conversion.json").read_text())
        assert record["converter"] == converter and record["frozen"] == {"input_lengths": [16]}
        assert record["outputs"] == ["logits:0", "new_state_c:0", "new_state_h:0"]
    assert json.loads((ArtifactLayout(artifacts, "synthetic-small-ovc").ir_dir / "conversion.json").read_text())["command"][0] == "ovc"


def test_the_public_converters_ir_has_the_guides_interface(matrix, docker):
    """input_lengths frozen away, the three inputs under the guide's plain names, the LSTM's states out; and each
    IR compiles and matches TF in the one runtime the three images share (their lock)."""
    artifacts, result = matrix
    for name in CELLS[:2]:
        described = last_json(stage_command(docker, name, "convert", ["inspect-ir"], artifacts))
        assert described == {"inputs": {"input_node": [1, 16, 19, 26], "previous_state_c": [1, 64], "previous_state_h": [1, 64]},
                             "outputs": {"logits": [16, 1, 29], "state_c": [1, 64], "state_h": [1, 64]}}
    assert list(result["loads"]) == ["convert-ov2026.4-ovc"]
    for name in CELLS[:2]:
        assert result["loads"]["convert-ov2026.4-ovc"][name].startswith("ok, max |Δ| ")


def test_int8_uses_the_current_nncf(matrix):
    artifacts, result = matrix
    layout = ArtifactLayout.of(artifacts, load_target(targets_file(), "synthetic-small-ov2026.4@int8"))
    record = json.loads((layout.ir_dir / "conversion.json").read_text())
    assert record["weight_compression"] == {"library": "nncf", "version": "3.4.0", "mode": "INT8_ASYM"}
    assert 'element_type="u8"' in layout.ir_xml.read_text()
    cell = next(cell for cell in result["cells"] if cell["target"] == "synthetic-small-ov2026.4@int8")
    assert cell["passed"] and cell["check"]["tolerance"] is None
    print(f"int8 (NNCF 3.4.0) max scaled |Δ| vs TF: {cell['check']['max_scaled']:.3g}")


def test_transcribe_runs_on_a_current_runtime_and_2024_6_stays_a_target(matrix):
    artifacts, _ = matrix
    reports = {}
    for target in ("synthetic-small", "synthetic-small-app-ov2024.6"):
        lines = invoke("transcribe", str(WAV), "--target", target, "--artifacts", str(artifacts)).stdout
        reports[target] = json.loads(lines.strip().splitlines()[-1])
    assert reports["synthetic-small"]["openvino"].startswith("2025.3.0")
    assert reports["synthetic-small-app-ov2024.6"]["openvino"].startswith("2024.6.0")
    assert reports["synthetic-small"]["transcript"] == reports["synthetic-small-app-ov2024.6"]["transcript"]


def test_todays_tf_frontend_gives_mo_2024_6s_weights(matrix):
    """No mo after 2024.6: 2026.4.1's TF frontend, without TensorFlow, writes the .bin mo 2024.6 wrote
    for synthetic-small (outputs.lock.json)."""
    _, result = matrix
    cell = next(cell for cell in result["cells"] if cell["target"] == "synthetic-small-ov2026.4")
    assert cell["passed"] and cell["converter"] == "tf-frontend" and cell["versions"]["openvino"] == "2026.4.1"
    locked = json.loads((CHECKOUT / LOCK_FILE_NAME).read_text())["synthetic-small"]
    assert cell["hashes"]["ir/output_graph.bin"] == locked["ir/output_graph.bin"]
    assert cell["hashes"]["frozen/output_graph.pb"] == locked["frozen/output_graph.pb"]
