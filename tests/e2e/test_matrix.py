"""`invoke matrix --jobs 2` on a small cell set: OpenVINO 2022.3 LTS, TensorFlow 1.15.2, the 0.9.3 release and
Coqui STT 1.4.0's exporter, n_hidden 64.

The full matrix (every target in targets.toml's `matrix`) stays a task: docs/matrix.md.
"""
from __future__ import annotations

import json

import pytest

from tests.e2e.helpers import invoke

CELLS = ("synthetic-small-ov2022.3", "synthetic-small-tf1.15.2", "synthetic-small-0.9.3", "coqui-stt-small")


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    artifacts = tmp_path_factory.mktemp("matrix")
    args = [arg for cell in CELLS for arg in ("--targets", cell)]
    result = invoke("matrix", *args, "--jobs", "2", "--artifacts", str(artifacts))
    return {"output": result.stdout, "json": json.loads((artifacts / "matrix" / "matrix.json").read_text()),
            "markdown": (artifacts / "matrix" / "matrix.md").read_text(), "artifacts": artifacts}


def test_cells_built_side_by_side_log_to_their_own_files(matrix):
    for cell in CELLS:
        log = (matrix["artifacts"] / "matrix" / "logs" / f"{cell}.log").read_text()
        assert f"[{cell}] check: running" in log and f"[{cell}] manifest:" in log
        assert all(other not in log for other in CELLS if other != cell)  # no interleaving
        assert f"[matrix] {cell}: pass in " in matrix["output"]
        assert f"[{cell}] check: running" not in matrix["output"]  # the terminal gets one line per cell


def test_every_cell_builds_and_passes_the_check(matrix):
    cells = {cell["target"]: cell for cell in matrix["json"]["cells"]}
    assert matrix["json"]["passed"] is True and sorted(cells) == sorted(CELLS)
    for cell in cells.values():
        assert cell["passed"] and cell["error"] == ""
        assert cell["check"]["passed"] is True and 0 < cell["check"]["tf_vs_f64"] < 1e-4
        assert set(cell["hashes"]) == {"frozen/output_graph.pb", "frozen/output_graph.pbmm", "ir/output_graph.xml", "ir/output_graph.bin"}
        assert cell["image_bytes"]["freeze"] > 0 and cell["image_bytes"]["convert"] > 0


def test_cells_report_the_swapped_versions(matrix):
    cells = {cell["target"]: cell for cell in matrix["json"]["cells"]}
    assert cells["synthetic-small-ov2022.3"]["versions"]["openvino"] == "2022.3.2"
    assert cells["synthetic-small-ov2022.3"]["versions"]["convert python"] == "3.10"
    assert cells["synthetic-small-tf1.15.2"]["versions"]["tensorflow"] == "1.15.2"
    assert cells["synthetic-small-tf1.15.2"]["versions"]["openvino"] == "2024.6.0"
    assert cells["coqui-stt-small"]["exporter"] == "coqui-stt"
    assert cells["coqui-stt-small"]["versions"]["coqui-stt-training"] == "1.4.0"


def test_the_table_is_printed_and_written(matrix):
    for cell in CELLS:
        assert f"| {cell} |" in matrix["markdown"] and f"| {cell} |" in matrix["output"]
    assert "| IR of \\ runtime | convert-ov2022.3 | convert-ov2024.6 |" in matrix["markdown"]


def test_each_runtime_loads_the_other_converters_ir_and_matches_tf(matrix):
    """docs/compatibility.md: 2022.3 LTS compiles 2024.6's IR of this model, and vice versa, and each computes
    what TF computes in the other's runtime (inspect-ir --match-tf)."""
    loads = matrix["json"]["loads"]
    assert sorted(loads) == ["convert-ov2022.3", "convert-ov2024.6"]
    for runtime, per_ir in loads.items():
        assert sorted(per_ir) == sorted(CELLS)
        for entry in per_ir.values():
            assert entry.startswith("ok, max |Δ| ") and float(entry.rsplit(" ", 1)[1]) <= 1e-5, (runtime, entry)
