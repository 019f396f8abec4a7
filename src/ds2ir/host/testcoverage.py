"""Line coverage of ``src/`` over the unit and end-to-end tests, including the stage containers.

`invoke test --coverage` runs pytest with COVERAGE_PROCESS_START set, so coverage.py starts
in every Python process: on the host (the test process and the invoke subprocesses) through
the ``.pth`` file of the host's coverage (>= 7.7, the `test` extra), and in every stage
container through a read-only mount that :meth:`StageLauncher.run` (launch.py) adds when ``$DS2IR_COVERAGE``
names this directory: coverage.py's pure-Python package (7.2.7, the last release that runs on
the freeze image's Python 3.7) and a ``sitecustomize`` that starts it. The images stay as they
are. Data files from the containers land in ``data/`` through a writable mount; ``coverage
combine`` maps the images' site-packages paths back onto ``src/``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Dict, List

from ds2ir.errors import FetchError
from ds2ir.host import digests
from ds2ir.host.engines import bind_mount

ENV = "DS2IR_COVERAGE"
# The newest coverage.py that still runs on Python 3.7 (the freeze image); its sdist holds the
# pure-Python package (the C tracer is optional: without it coverage uses its Python tracer).
VERSION = "7.2.7"
SDIST_SHA256 = "924d94291ca674905fe9481f12294eb11f2d3d3fd1adb20314ba89e94f44ed59"
CONTAINER_LIBRARY = "/opt/ds2ir-coverage"
CONTAINER_DATA = "/coverage-data"
SITECUSTOMIZE = "import coverage\ncoverage.process_startup()\n"


def rcfile(project: Path) -> str:
    """coverage.py settings: measure the ds2ir package wherever it is installed, map it onto src/."""
    return "\n".join([
        "[run]", "source = ds2ir", "parallel = True",
        "disable_warnings = module-not-measured, no-data-collected, module-not-imported, couldnt-parse",
        "[paths]", f"source =\n    {project / 'src' / 'ds2ir'}\n    */site-packages/ds2ir\n    */src/ds2ir",
        "[report]", "show_missing = True", "skip_covered = False", "",
    ])


def prepare(directory: Path, project: Path) -> Dict[str, str]:
    """Lay out ``directory`` (library, settings, empty data) and return the environment for pytest."""
    library = directory / "lib"
    if not (library / "coverage" / "__init__.py").is_file():
        _install(library)
    (library / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (library / ".coveragerc").write_text(rcfile(project))
    data = directory / "data"
    shutil.rmtree(str(data), ignore_errors=True)
    data.mkdir(parents=True)
    os.chmod(str(data), 0o777)  # stage containers write here as the calling user
    return {ENV: str(directory), "COVERAGE_PROCESS_START": str(library / ".coveragerc"), "COVERAGE_FILE": str(data / ".coverage")}


def container_options(directory: Path) -> List[str]:
    """`docker run` options that start coverage.py in a stage container, data into ``directory``/data."""

    return ["--mount", bind_mount(directory / "lib", CONTAINER_LIBRARY, read_only=True),
            "--mount", bind_mount(directory / "data", CONTAINER_DATA), "-e", f"PYTHONPATH={CONTAINER_LIBRARY}", "-e", f"COVERAGE_PROCESS_START={CONTAINER_LIBRARY}/.coveragerc",
            "-e", f"COVERAGE_FILE={CONTAINER_DATA}/.coverage"]


def report(directory: Path) -> str:
    """Combine every process's data (host and containers) and return coverage.py's report of src/."""
    env = dict(os.environ, COVERAGE_FILE=str(directory / ".coverage"))
    env.pop("COVERAGE_PROCESS_START", None)
    rc = str(directory / "lib" / ".coveragerc")
    subprocess.run([sys.executable, "-m", "coverage", "combine", "--rcfile", rc, str(directory / "data")],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "coverage", "report", "--rcfile", rc], env=env, check=True,
                          stdout=subprocess.PIPE, universal_newlines=True).stdout


def _install(library: Path) -> None:
    """coverage.py's pure-Python package from its sdist on PyPI, verified against SDIST_SHA256."""
    with tempfile.TemporaryDirectory() as scratch:
        download = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                   f"coverage=={VERSION}", "-d", scratch, "--disable-pip-version-check", "-q"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        sdist = Path(scratch) / f"coverage-{VERSION}.tar.gz"
        if download.returncode != 0 or not sdist.is_file():
            raise FetchError(f"Could not download coverage {VERSION}'s source from PyPI for `invoke test --coverage`: "
                             f"{download.stdout.strip()[-500:]}")
        digest = digests.file_sha256(sdist)
        if digest != SDIST_SHA256:
            raise FetchError(f"coverage-{VERSION}.tar.gz from PyPI has SHA-256 {digest}, not {SDIST_SHA256}; "
                             f"refusing to run it.")
        with tarfile.open(str(sdist)) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(f"coverage-{VERSION}/coverage/")
                       and (m.isfile() or m.isdir()) and ".." not in m.name.split("/")]
            archive.extractall(scratch, members=members)
        staged = library.with_name(library.name + ".tmp")
        shutil.rmtree(str(staged), ignore_errors=True)
        staged.mkdir(parents=True)
        shutil.move(str(Path(scratch) / f"coverage-{VERSION}" / "coverage"), str(staged / "coverage"))
        shutil.rmtree(str(library), ignore_errors=True)
        os.replace(str(staged), str(library))
