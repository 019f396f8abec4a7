"""The GitHub workflow's reproduce job, run for real with act on a clean clone of HEAD (offline)."""
from __future__ import annotations

from tests.e2e.helpers import invoke


def test_the_reproduce_job_runs_under_act_and_its_build_check_passes(tmp_path):
    log = tmp_path / "reproduce.log"
    result = invoke("ci-local", "--job", "reproduce", "--log", str(log))
    assert "act: job reproduce of reproduce.yml succeeded" in result.stdout
    text = log.read_text()
    assert "Success - Main Build synthetic-0.8.2 and check its expected hashes" in text
    assert "[synthetic-0.8.2] outputs are bit-identical to outputs.lock.json" in text
    assert "Job succeeded" in text
    assert "Success - Main Free disk space" not in text  # hosted-runner-only steps are skipped under act
