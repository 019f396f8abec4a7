"""`invoke mutate` runs mutmut over a gate module against its fast tests and reports a true score."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host import mutation

PROJECT = Path(__file__).resolve().parents[2]


def test_mutate_scores_the_tolerance_gate_and_every_survivor_is_a_documented_equivalent():
    result = subprocess.run([sys.executable, "-m", "invoke", "-r", str(PROJECT), "mutate", "--module", "verify",
                             "--only", "ds2ir.model.verify.x_tolerance_for*"],
                            cwd=str(PROJECT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0, result.stdout[-3000:]
    lines = result.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    stats = summary["stats"]
    run = sum(stats[outcome] for outcome in mutation.JUDGED)
    assert summary["modules"] == ["verify"] and run >= 15  # only tolerance_for's mutants ran
    assert summary["score"] == round(stats["killed"] / run, 4) >= 0.85
    survivors = [line.split(":")[0] for line in lines[:-1] if line.startswith("ds2ir.model.verify.")]
    assert len(survivors) == stats["survived"] + stats["no_tests"]
    documented = (PROJECT / "docs" / "testing.md").read_text()
    assert [name for name in survivors if f"`{name}`" not in documented] == []
    assert not (PROJECT / "mutants").exists()  # mutmut ran in a copy


def test_unknown_module_is_refused():
    with pytest.raises(ConfigError, match="unknown module.*nosuch.*choose from verify, build"):
        mutation.run(PROJECT, ["nosuch"])


def test_score_is_over_the_mutants_that_ran_untested_ones_count_as_survivors():
    assert mutation.score({"total": 99, "killed": 6, "timeout": 1, "survived": 2, "no_tests": 1, "skipped": 0}) == 0.7
    assert mutation.score({"total": 99, "killed": 0, "survived": 0, "no_tests": 0}) == 1.0
