"""The one place where ds2ir starts processes.

Commands are argument lists, echoed shell-quoted before they run; ``dry_run`` prints
them without running. Output streams to the terminal (when ``echo_output``) while the
last lines are kept, so a failure can say what the command printed last.
"""
from __future__ import annotations

import collections
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Callable, Mapping, Optional, Sequence, Union

from ds2ir.errors import CommandError, CommandTimeoutError, MissingInputError, quote

StrPath = Union[str, Path]
LOG_TAIL_LINES = 40



class Runner:
    """Runs commands; replaceable in unit tests, ``dry_run`` for --dry-run."""

    def __init__(self, *, dry_run: bool = False, echo_output: bool = True, say: Optional[Callable[[str], None]] = None,
                 stream: Optional[IO[str]] = None):
        """``stream`` takes what would go to the terminal (stderr): one log file per build run in parallel."""
        self.dry_run = dry_run
        self.echo_output = echo_output
        self.stream = stream
        self.say = say or self._say

    def _say(self, message: str) -> None:
        print(message, file=self.stream or sys.stderr, flush=True)

    def run(
        self,
        argv: Sequence[StrPath],
        *,
        step: str,
        capture: bool = False,
        stdin: Optional[IO[bytes]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[StrPath] = None,
        quiet: bool = False,
        error: Callable[..., CommandError] = CommandError,
        log: Optional[IO[str]] = None,
        timeout: Optional[float] = None,
    ) -> str:
        """Run ``argv``; return its output when ``capture``; raise ``error`` on failure.

        ``quiet`` neither echoes the command nor streams its output (for probes); ``log`` gets
        every line of it as well (long jobs whose whole output is worth keeping). A command
        still running after ``timeout`` seconds is killed: :class:`CommandTimeoutError`.
        """
        command = [str(a) for a in argv]
        if not quiet:
            self.say(f"$ {quote(command)}")
        if self.dry_run:
            return ""
        full_env = dict(os.environ, **env) if env else None
        tail: "collections.deque[str]" = collections.deque(maxlen=LOG_TAIL_LINES)
        captured = []
        try:
            proc = subprocess.Popen(
                command,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=str(cwd) if cwd else None,
            )
        except FileNotFoundError as exc:
            raise MissingInputError(
                f"Cannot run '{command[0]}' for step '{step}': the program is not installed or not on PATH. "
                f"Install it (see README.md, 'scripts/bootstrap' does it on Debian) and retry."
            ) from exc
        assert proc.stdout is not None
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            proc.kill()  # ends its output, so the loop below ends too

        timer = threading.Timer(timeout, expire) if timeout is not None else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                tail.append(line.rstrip("\n"))
                if log is not None:
                    log.write(line)
                if capture:
                    captured.append(line)
                elif self.echo_output and not quiet:
                    out = self.stream or sys.stderr
                    out.write(line)
                    out.flush()
            code = proc.wait()
        finally:
            if timer is not None:
                timer.cancel()
            if proc.poll() is None:  # interrupted: never leave the child running
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if expired.is_set():
            raise CommandTimeoutError(step=step, command=command, timeout=timeout or 0, log_tail="\n".join(tail))
        if code != 0:
            raise error(step=step, command=command, exit_code=code, log_tail="\n".join(tail))
        return "".join(captured)

    def succeeds(self, argv: Sequence[StrPath], *, timeout: Optional[float] = None) -> bool:
        """Whether ``argv`` exits 0 within ``timeout`` seconds; output discarded. For probes, never in dry run."""
        try:
            return subprocess.run(
                [str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout
            ).returncode == 0
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return False
