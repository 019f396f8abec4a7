"""`invoke matrix`: build a set of targets, one cell each, and tabulate what they prove.

Each cell is one full build (checkpoint -> frozen graph -> IR -> IR-vs-TF check); a failing
cell is recorded with its error and the others still build. After the builds, every IR is
loaded and compiled in every convert image that took part (the load matrix: which
OpenVINO runtime reads which converter's IR). The table goes to the terminal and, as
markdown and JSON, to ``<artifacts>/matrix/``. Everything a cell reports is read back
from the build's own records (manifest.json, check/report.json), not measured twice.
"""
from __future__ import annotations

import concurrent.futures
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from ds2ir import atomic
from ds2ir.errors import CommandError, Ds2irError, MissingInputError
from ds2ir.host.build import Builder
from ds2ir.host.docker import Docker
from ds2ir.host.images import ensure_stage_image
from ds2ir.host.launch import StageLauncher
from ds2ir.host.project import Project
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import ImageSpec, Target
from ds2ir.runner import Runner

MATRIX_DIR = "matrix"
LOGS_DIR = "logs"
#: the packages whose versions a cell shows, by image stage
VERSION_PACKAGES = {"freeze": ("tensorflow", "coqui-stt-training"), "convert": ("openvino", "openvino-dev")}


@dataclass
class Cell:
    """One target's build (or one variant's: ``target`` is then TARGET@VARIANT): its versions, images,
    time, output hashes and IR-vs-TF error."""

    target: str
    passed: bool = False
    error: str = ""
    exporter: str = ""
    converter: str = ""
    ir_precision: str = ""
    versions: Dict[str, str] = field(default_factory=dict)
    image_tags: Dict[str, str] = field(default_factory=dict)
    image_bytes: Dict[str, int] = field(default_factory=dict)
    run_seconds: float = 0.0
    stage_seconds: float = 0.0
    hashes: Dict[str, str] = field(default_factory=dict)
    check: Dict[str, object] = field(default_factory=dict)
    #: against outputs.lock.json: "bit-identical", "differs" or "" (the target is not locked)
    lock: str = ""


#: a Builder for a target whose commands run on the given engine (each parallel cell has its own log)
BuilderFactory = Callable[[Target, Docker], Builder]


def build_cell(target: Target, builder: Builder, docker: Docker, expected: Optional[Mapping[str, str]] = None) -> Cell:
    """Build one target; never raises a ds2ir error: a failure becomes the cell's error.

    With ``expected`` (the target's entry in outputs.lock.json) the cell also fails unless its
    outputs are bit-identical to it.
    """
    cell = Cell(target.label, exporter=target.exporter, converter=str(target.convert_image.converter),
                ir_precision=target.ir_precision)
    cell.versions = {"freeze python": target.freeze_image.python, "convert python": target.convert_image.python}
    started = time.monotonic()
    try:
        builder.build()
    except CommandError as exc:
        cell.error = f"{exc.step} failed: {_failure_line(exc.log_tail)}"
    except Ds2irError as exc:
        cell.error = _failure_line(str(exc))
    cell.run_seconds = round(time.monotonic() - started, 1)
    _read_records(cell, builder.layout, docker)
    if expected is not None and not cell.error:
        cell.lock = "bit-identical" if dict(expected) == cell.hashes else "differs"
        if cell.lock == "differs":
            cell.error = "outputs differ from outputs.lock.json"
    cell.passed = not cell.error and cell.check.get("passed") is True
    return cell


def _read_records(cell: Cell, layout: ArtifactLayout, docker: Docker) -> None:
    """Fill a cell from the build's manifest and check report, as far as they exist."""
    manifest_path = layout.manifest
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        for stage, image in manifest.get("images", {}).items():
            packages = dict(line.split("==", 1) for line in image.get("packages", []))
            for name in VERSION_PACKAGES.get(stage, ()):
                if name in packages:
                    cell.versions[name] = packages[name]
            cell.image_tags[stage] = image["tag"]
            if docker.image_id(image["tag"]):
                cell.image_bytes[stage] = docker.image_size(image["tag"])
        cell.stage_seconds = round(sum(float(s.get("seconds") or 0) for s in manifest.get("stages", {}).values()), 1)
        cell.hashes = dict(manifest.get("outputs", {}))
    report_path = layout.check_report
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        cell.check = {key: report.get(key) for key in ("ir_vs_f64", "tf_vs_f64", "max_abs", "max_scaled", "tolerance", "passed")}


def load_matrix(cells: Sequence[Cell], targets: Dict[str, Target], *, docker: Docker,
                project: Project) -> Dict[str, Dict[str, str]]:
    """runtime image -> IR's target -> "ok" or why it fails: each built IR compiled in each convert image.

    "ok" means it compiled for CPU and its outputs on the check's windows passed the check's float64 gate
    in that runtime ("ok, max |Δ| X" with the largest |IR - TF| when the image reports it).
    """
    artifacts = project.artifacts
    with_ir = [cell.target for cell in cells if ArtifactLayout.of(artifacts, targets[cell.target]).ir_xml.is_file()]
    runtimes: Dict[str, ImageSpec] = {}
    for cell in cells:
        spec = targets[cell.target].convert_image
        # images with the same lock hold the same runtime (e.g. one per converter): load in the first only
        if "convert" in cell.image_tags and all(other.lock != spec.lock for other in runtimes.values()):
            runtimes[spec.name] = spec
    loads: Dict[str, Dict[str, str]] = {}
    launcher = StageLauncher(docker, artifacts=artifacts, targets=project.targets)
    for name, spec in sorted(runtimes.items()):
        image = ensure_stage_image(docker, spec, project.root)
        loads[name] = {}
        for target in with_ir:
            try:
                printed = launcher.run(step="inspect-ir", image=image, args=["inspect-ir", "--match-tf", "--target", target],
                                       capture=True, platform=spec.platform)
                loads[name][target] = "ok" + _delta(printed)
            except Ds2irError as exc:
                loads[name][target] = _failure_line(str(exc))
    return loads


def _delta(printed: str) -> str:
    """", max |Δ| 1.7e-06" from inspect-ir --match-tf's JSON line, or nothing when it has none."""
    lines = [line for line in printed.splitlines() if line.startswith("{")]
    vs_tf = json.loads(lines[-1]).get("vs_tf") if lines else None
    return f", max |Δ| {vs_tf['max_abs']:.2g}" if vs_tf else ""


def _failure_line(message: str) -> str:
    """The most telling line of a failed load: the runtime's own exception, else the last line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Exception" in line or "Error" in line:
            return line[:300]
    return lines[-1][:300] if lines else "failed"


def run(targets: Sequence[Target], *, make_builder: BuilderFactory, docker: Docker,
        project: Project, locked: Optional[Mapping[str, Mapping[str, str]]] = None, jobs: int = 1) -> Dict[str, object]:
    """Build every target, then the load matrix; write matrix.{md,json}; return the JSON's content.

    ``locked`` (outputs.lock.json's content) makes each locked cell check its outputs' hashes too.
    With ``jobs`` > 1, cells build side by side, each logging to ``matrix/logs/<target>.log``, after
    every image the cells need was built once, one after another.
    """
    expected, artifacts = locked or {}, project.artifacts
    if jobs <= 1:
        cells = []
        for target in targets:
            docker.runner.say(f"[matrix] {target.label}")
            cells.append(build_cell(target, make_builder(target, docker), docker, expected.get(target.label)))
    else:
        cells = _run_parallel(targets, make_builder, docker, artifacts / MATRIX_DIR / LOGS_DIR, expected, jobs)
    loads = load_matrix(cells, {t.label: t for t in targets}, docker=docker, project=project)
    return _write(artifacts / MATRIX_DIR, cells, loads)


def _run_parallel(targets: Sequence[Target], make_builder: BuilderFactory, docker: Docker, logs: Path,
                  expected: Mapping[str, Mapping[str, str]], jobs: int) -> List[Cell]:
    """Cells on ``jobs`` threads (the work is in containers); one line per cell on the terminal, a log per cell."""
    say = docker.runner.say
    logs.mkdir(parents=True, exist_ok=True)
    handles = {target.label: open(logs / f"{target.label}.log", "w") for target in targets}
    try:
        builders = {t.label: make_builder(t, docker.with_runner(Runner(dry_run=docker.runner.dry_run, stream=handles[t.label])))
                    for t in targets}
        for target in targets:  # every image once, before any cell: two cells must not build one image twice
            try:
                builders[target.label].images()
            except Ds2irError:
                pass  # the cell's own build meets the same error and records it

        def one(target: Target) -> Cell:
            say(f"[matrix] {target.label}: building (log: {handles[target.label].name})")
            builder = builders[target.label]
            cell = build_cell(target, builder, builder.docker, expected.get(target.label))
            say(f"[matrix] {target.label}: {'pass' if cell.passed else 'FAIL: ' + (cell.error or 'check failed')} "
                f"in {cell.run_seconds:g} s")
            return cell

        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(one, targets))
    finally:
        for handle in handles.values():
            handle.close()


def _write(out: Path, cells: Sequence[Cell], loads: Dict[str, Dict[str, str]]) -> Dict[str, object]:
    result: Dict[str, object] = {"passed": all(cell.passed for cell in cells), "cells": [asdict(c) for c in cells],
                                 "loads": loads}
    atomic.write_json(out / "matrix.json", result)
    atomic.write_bytes(out / "matrix.md", render_markdown(cells, loads).encode("utf-8"))
    return result


def github_matrix(targets: Sequence[Target]) -> str:
    """The cells as a GitHub Actions job matrix (JSON on one line): one runner per target or variant."""
    return json.dumps({"include": [{"target": target.label} for target in targets]}, separators=(",", ":"))


def gather(cell_dirs: Sequence[Path], out: Path) -> Dict[str, object]:
    """One table from the matrix.json that each runner wrote for its cells; write it to ``out``.

    The load matrix keeps what each runner measured (its own IRs in its own runtimes).
    """
    cells: List[Cell] = []
    loads: Dict[str, Dict[str, str]] = {}
    for directory in cell_dirs:
        path = directory / "matrix.json"
        try:
            record = json.loads(path.read_text())
            cells += [Cell(**cell) for cell in record["cells"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MissingInputError(f"{path} is not a matrix record written by 'invoke matrix' ({exc}); "
                                    f"pass the directories the cells' runners uploaded.") from exc
        for runtime, per_ir in record.get("loads", {}).items():
            loads.setdefault(runtime, {}).update(per_ir)
    if not cells:
        raise MissingInputError("No matrix records to gather: pass the directories the cells' runners uploaded.")
    return _write(out, sorted(cells, key=lambda cell: cell.target), loads)


def _short(digest: Optional[str]) -> str:
    return digest[:12] if digest else "-"


def _gb(cell: Cell, stage: str) -> str:
    size = cell.image_bytes.get(stage)
    return f"{size / 1e9:.2f}" if size else "-"


def _number(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else "-"


def render_markdown(cells: Sequence[Cell], loads: Dict[str, Dict[str, str]]) -> str:
    """The cells table, then the load matrix (rows: IRs, columns: runtimes)."""
    rows = ["| target | TF (freeze py) | exporter | OpenVINO (convert py) | converter | IR | images GB (freeze / convert) "
            "| stages s | run s | frozen sha256 | xml sha256 | bin sha256 | \\|IR - f64\\| | \\|TF - f64\\| | \\|IR - TF\\| "
            "| allowance | lock | result |",
            "|" + "---|" * 17]
    for c in cells:
        tf = c.versions.get("tensorflow", "-") + (f" + coqui {c.versions['coqui-stt-training']}" if "coqui-stt-training" in c.versions else "")
        ov = c.versions.get("openvino", "-")
        result = "pass" if c.passed else f"FAIL: {c.error or 'check failed'}".replace("|", "\\|")
        rows.append(
            f"| {c.target} | {tf} ({c.versions.get('freeze python', '-')}) | {c.exporter} | {ov} ({c.versions.get('convert python', '-')}) "
            f"| {c.converter} | {c.ir_precision} | {_gb(c, 'freeze')} / {_gb(c, 'convert')} | {c.stage_seconds:g} | {c.run_seconds:g} "
            f"| {_short(c.hashes.get('frozen/output_graph.pb'))} | {_short(c.hashes.get('ir/output_graph.xml'))} "
            f"| {_short(c.hashes.get('ir/output_graph.bin'))} | {_number(c.check.get('ir_vs_f64'))} | {_number(c.check.get('tf_vs_f64'))} "
            f"| {_number(c.check.get('max_scaled'))} "
            f"| {_number(c.check.get('tolerance'))} | {c.lock or '-'} | {result} |"
        )
    lines = ["## Cells", "", *rows, ""]
    if loads:
        runtimes = sorted(loads)
        irs = sorted({target for per_runtime in loads.values() for target in per_runtime})
        lines += ["## Loads: each IR compiled for CPU in each convert image", "",
                  "| IR of \\ runtime | " + " | ".join(runtimes) + " |", "|---|" + "---|" * len(runtimes)]
        for target in irs:
            entries = [loads[runtime].get(target, "-").replace("|", "\\|") for runtime in runtimes]
            lines.append(f"| {target} | " + " | ".join(entries) + " |")
        lines.append("")
    return "\n".join(lines)
