import sys

import pytest

from ds2ir.errors import CommandError, CommandTimeoutError, MissingInputError
from ds2ir.runner import Runner, quote


def test_quote():
    assert quote(["mo", "--input", "a b", "x"]) == "mo --input 'a b' x"


def test_failure_carries_step_command_code_and_tail():
    said = []
    runner = Runner(say=said.append, echo_output=False)
    script = "import sys\nfor i in range(100): print('line', i)\nsys.exit(3)"
    with pytest.raises(CommandError) as excinfo:
        runner.run([sys.executable, "-c", script], step="demo")
    error = excinfo.value
    assert error.step == "demo" and error.exit_code == 3
    assert "line 99" in error.log_tail and "line 0\n" not in error.log_tail
    assert "Step 'demo' failed with exit code 3" in str(error)
    assert said and said[0].startswith("$ ")


def test_capture_returns_output():
    assert Runner(say=lambda _: None).run([sys.executable, "-c", "print('hi')"], step="x", capture=True) == "hi\n"


def test_dry_run_runs_nothing(tmp_path):
    said = []
    marker = tmp_path / "ran"
    Runner(dry_run=True, say=said.append).run([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], step="x")
    assert not marker.exists() and said


def test_missing_program_is_a_clear_error():
    with pytest.raises(MissingInputError, match="not installed"):
        Runner(say=lambda _: None).run(["ds2ir-no-such-program"], step="x")


def test_a_command_past_its_timeout_is_killed_and_reported() -> None:
    with pytest.raises(CommandTimeoutError) as raised:
        Runner(echo_output=False).run(["sh", "-c", "echo started; exec sleep 600"], step="hang", timeout=0.5, quiet=True)
    error = raised.value
    assert error.timeout == 0.5 and error.exit_code == -9
    assert str(error).startswith("Step 'hang' did not finish within 0.5 s and was stopped.")
    assert "started" in error.log_tail
