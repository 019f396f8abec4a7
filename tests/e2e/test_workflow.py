"""The GitHub workflow's reproduce job, run for real with act on a clean clone of HEAD (offline)."""
from __future__ import annotations

from tests.e2e.helpers import invoke


def test_the_reproduce_job_runs_under_act_and_its_build_check_passes(tmp_path):
    log = tmp_path / "reproduce.log"
    result = invoke("ci-local", "--job", "reproduce", "--log", str(log))
    assert "act: reproduce.yml (push, job reproduce) succeeded" in result.stdout
    text = log.read_text()
    assert "Success - Main Build synthetic-0.8.2 and check its expected hashes" in text
    assert "[synthetic-0.8.2] outputs are bit-identical to outputs.lock.json" in text
    assert "Job succeeded" in text
    assert "Success - Main Free disk space" not in text  # hosted-runner-only steps are skipped under act


def test_the_matrix_workflow_builds_one_cell_per_runner_and_gathers_one_table(tmp_path):
    log = tmp_path / "matrix.log"
    invoke("ci-local", "--workflow", "matrix.yml", "--event", "workflow_dispatch",
           "--input", "targets=synthetic-small synthetic-small-tf1.15.2", "--log", str(log))
    text = log.read_text()
    for cell in ("synthetic-small", "synthetic-small-tf1.15.2"):
        assert f"Success - Main Build {cell} and check it against outputs.lock.json where locked" in text
    assert "Success - Main One table from every cell" in text
    table = [line.split("|", 1)[1] for line in text.splitlines() if "[matrix/gather" in line and line.count("|") > 10]
    rows = [row for row in table if "| synthetic-small" in row]  # the cells table, not the load matrix
    assert len(rows) == 2 and all(row.rstrip().endswith("| pass |") for row in rows), rows
    assert any("| bit-identical | pass |" in row for row in rows)  # synthetic-small is locked: its hashes were checked
