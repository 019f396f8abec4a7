"""A fake `docker` for host-side unit tests of command lines: logs each call, answers like a live engine."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

#: docker subcommands that change the engine's state (containers, images)
MUTATING = ("run", "rm", "create", "start", "kill", "stop", "build", "pull", "tag", "rmi", "exec")


def install(directory: Path) -> Dict[str, str]:
    """Put a fake `docker` in ``directory/bin``; return the environment that puts it first on PATH."""
    bindir = directory / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / "docker"
    script.write_text(f"""#!/bin/sh
printf '%s\\n' "$*" >> '{directory / "docker.log"}'
case "$1" in
  version) echo 20.10.0;;
  image) echo sha256:0123456789abcdef;;
esac
exit 0
""")
    script.chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


def calls(directory: Path) -> List[List[str]]:
    """Each call of the fake docker, as its arguments."""
    log = directory / "docker.log"
    return [line.split() for line in log.read_text().splitlines()] if log.is_file() else []
