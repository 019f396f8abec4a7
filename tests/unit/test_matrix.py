"""The matrix: cells read from build records, failures isolated, tables and JSON written (no Docker)."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Dict, List, Optional

from ds2ir import atomic
from ds2ir.errors import ContainerError, MissingInputError
from ds2ir.host import matrix
from ds2ir.host.project import Project
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target
from ds2ir.model.targets_file import load_target
from tests._support.checkout import targets_file


class FakeRunner:
    dry_run = False

    def __init__(self) -> None:
        self.said: List[str] = []

    def say(self, message: str) -> None:
        self.said.append(message)


class FakeDocker:
    """Images that exist with fixed sizes; inspect-ir loads fail for IRs listed in ``unloadable``."""

    def __init__(self, unloadable: Optional[Dict[str, str]] = None) -> None:
        self.runner = FakeRunner()
        self.unloadable = unloadable or {}
        self.runs: List[List[str]] = []

    def image_id(self, ref: str) -> Optional[str]:
        return "sha256:" + ref

    def with_runner(self, runner) -> "FakeDocker":
        engine = FakeDocker(self.unloadable)
        engine.runner = runner
        return engine

    def image_size(self, ref: str) -> int:
        return 2_500_000_000 if "convert" in ref else 850_000_000

    def resolve_base_image(self, public_image: str) -> str:
        return public_image

    @staticmethod
    def content_tag(name: str, context: object, **kwargs: object) -> str:
        return f"{name}:tag"

    def run_container(self, *, step: str, image: str, args: List[str], **kwargs: object) -> str:
        self.runs.append([image, *args])
        target = args[args.index("--target") + 1]
        if self.unloadable.get(image) == target:
            raise ContainerError(step=step, command=args, exit_code=2, image=image,
                                 log_tail="Traceback\nRuntimeError: Cannot create Gelu layer: opset13 unknown\n")
        return "{}"


class FakeBuilder:
    """Writes what a real build records (manifest, check report, IR) or fails like one."""

    def __init__(self, target: Target, artifacts: Path, *, error: Optional[Exception] = None, max_abs: float = 2e-6,
                 docker: Optional[FakeDocker] = None, together: Optional[threading.Barrier] = None):
        self.docker = docker
        self.together = together  # every cell must be inside build() at once: proves they run side by side
        self.layout = ArtifactLayout(artifacts, target.name)
        self.target = target
        self.error = error
        self.max_abs = max_abs

    def images(self) -> Dict[str, str]:
        self.docker.runner.say(f"images of {self.target.name}")
        return {}

    def build(self) -> Dict[str, float]:
        if self.together:
            self.docker.runner.say(f"building {self.target.name}")
            self.together.wait(timeout=10)
        if self.error:
            raise self.error
        for path in (self.layout.ir_xml, self.layout.ir_bin):
            atomic.write_bytes(path, b"ir")
        images = {stage: {"tag": f"ds2ir/{spec.name}:tag", "packages": packages}
                  for stage, spec, packages in (("freeze", self.target.freeze_image, ["tensorflow==1.15.5", "numpy==1.18.5"]),
                                                ("convert", self.target.convert_image, ["openvino==2024.6.0"]))}
        atomic.write_json(self.layout.target_dir / "manifest.json", {
            "images": images, "stages": {"freeze": {"seconds": 10.0}, "convert": {"seconds": 20.5}},
            "outputs": {"frozen/output_graph.pb": "a" * 64, "ir/output_graph.xml": "b" * 64, "ir/output_graph.bin": "c" * 64},
        })
        atomic.write_json(self.layout.check_dir / "report.json", {"max_abs": self.max_abs, "max_scaled": self.max_abs,
                                                                   "tolerance": 1e-5, "passed": self.max_abs <= 1e-5})
        return {"freeze": 10.0}


def _project(root: Path) -> Project:
    """A project at ``root`` writing its artifacts there too."""
    return Project.of_checkout(root, {"artifacts": "."}, environ={})


def _run(tmp_path: Path, builders: Dict[str, dict], docker: FakeDocker) -> dict:
    targets = [load_target(targets_file(), name) for name in builders]
    return matrix.run(targets, make_builder=lambda t, d: FakeBuilder(t, tmp_path, **builders[t.name]), docker=docker,  # type: ignore
                      project=_project(tmp_path))


def test_cells_come_from_the_build_records(tmp_path):
    result = _run(tmp_path, {"synthetic-small": {}, "synthetic-small-ov2022.3": {}}, FakeDocker())
    assert result["passed"] is True
    cell = result["cells"][0]
    assert cell["target"] == "synthetic-small" and cell["passed"] is True
    assert cell["versions"] == {"freeze python": "3.7", "convert python": "3.11", "tensorflow": "1.15.5", "openvino": "2024.6.0"}
    assert cell["image_bytes"] == {"freeze": 850_000_000, "convert": 2_500_000_000}
    assert cell["stage_seconds"] == 30.5 and cell["check"]["max_abs"] == 2e-6
    assert cell["hashes"]["ir/output_graph.xml"] == "b" * 64
    assert json.loads((tmp_path / "matrix" / "matrix.json").read_text()) == result


def test_a_failing_cell_does_not_stop_the_others(tmp_path):
    error = ContainerError(step="freeze", command=["docker"], exit_code=2, image="i", log_tail="ds2ir: error: missing variable layer_2/bias")
    result = _run(tmp_path, {"synthetic-small": {"error": error}, "synthetic-small-ov2022.3": {},
                             "synthetic-small-tf1.15.2": {"max_abs": 1.0}}, FakeDocker())
    cells = {cell["target"]: cell for cell in result["cells"]}
    assert result["passed"] is False
    assert cells["synthetic-small"]["error"] == "freeze failed: ds2ir: error: missing variable layer_2/bias"
    assert cells["synthetic-small-ov2022.3"]["passed"] is True
    assert cells["synthetic-small-tf1.15.2"]["passed"] is False and cells["synthetic-small-tf1.15.2"]["error"] == ""
    markdown = (tmp_path / "matrix" / "matrix.md").read_text()
    assert "| synthetic-small-ov2022.3 |" in markdown and "FAIL: freeze failed" in markdown and "FAIL: check failed" in markdown


def test_other_errors_are_recorded_too(tmp_path):
    result = _run(tmp_path, {"synthetic-small": {"error": MissingInputError("The checkpoint directory x does not exist.")}},
                  FakeDocker())
    assert result["cells"][0]["error"] == "The checkpoint directory x does not exist."


def test_every_ir_is_loaded_in_every_convert_image(tmp_path):
    docker = FakeDocker(unloadable={"ds2ir/convert-ov2022.3:tag": "synthetic-small"})
    result = _run(tmp_path, {"synthetic-small": {}, "synthetic-small-ov2022.3": {}}, docker)
    assert result["loads"] == {
        "convert-ov2022.3": {"synthetic-small": "RuntimeError: Cannot create Gelu layer: opset13 unknown",
                             "synthetic-small-ov2022.3": "ok"},
        "convert-ov2024.6": {"synthetic-small": "ok", "synthetic-small-ov2022.3": "ok"},
    }
    assert ["ds2ir/convert-ov2024.6:tag", "inspect-ir", "--match-tf", "--target", "synthetic-small-ov2022.3"] in docker.runs
    markdown = (tmp_path / "matrix" / "matrix.md").read_text()
    assert "| IR of \\ runtime | convert-ov2022.3 | convert-ov2024.6 |" in markdown


def test_check_fails_a_cell_whose_outputs_differ_from_the_lock_and_passes_a_matching_one(tmp_path):
    built = {"frozen/output_graph.pb": "a" * 64, "ir/output_graph.xml": "b" * 64, "ir/output_graph.bin": "c" * 64}
    locked = {"synthetic-small": built, "synthetic-small-ov2022.3": dict(built, **{"ir/output_graph.bin": "d" * 64})}
    targets = [load_target(targets_file(), name) for name in ("synthetic-small", "synthetic-small-ov2022.3", "synthetic-small-tf1.15.2")]
    result = matrix.run(targets, make_builder=lambda t, d: FakeBuilder(t, tmp_path), docker=FakeDocker(),  # type: ignore
                        project=_project(tmp_path), locked=locked)
    cells = {cell["target"]: cell for cell in result["cells"]}
    assert (cells["synthetic-small"]["lock"], cells["synthetic-small"]["passed"]) == ("bit-identical", True)
    assert (cells["synthetic-small-ov2022.3"]["lock"], cells["synthetic-small-ov2022.3"]["passed"]) == ("differs", False)
    assert (cells["synthetic-small-tf1.15.2"]["lock"], cells["synthetic-small-tf1.15.2"]["passed"]) == ("", True)
    assert result["passed"] is False


def test_jobs_build_cells_side_by_side_each_into_its_own_log_with_one_line_each_on_the_terminal(tmp_path):
    names = ("synthetic-small", "synthetic-small-ov2022.3")
    together = threading.Barrier(len(names))
    terminal: List[str] = []
    docker = FakeDocker()
    docker.runner.say = terminal.append  # type: ignore[method-assign]
    result = matrix.run([load_target(targets_file(), name) for name in names], docker=docker, project=_project(tmp_path), jobs=2,
                        make_builder=lambda t, d: FakeBuilder(t, tmp_path, docker=d, together=together))  # type: ignore
    assert result["passed"] is True and [cell["target"] for cell in result["cells"]] == list(names)
    for name in names:
        log = (tmp_path / "matrix" / "logs" / f"{name}.log").read_text()
        assert log == f"images of {name}\nbuilding {name}\n"  # the cell's own output, and only it
        assert [line for line in terminal if line.startswith(f"[matrix] {name}:")] == [
            f"[matrix] {name}: building (log: {tmp_path / 'matrix' / 'logs' / (name + '.log')})",
            next(line for line in terminal if line.startswith(f"[matrix] {name}: pass in "))]


class ReportingDocker(FakeDocker):
    """inspect-ir --match-tf prints its comparison with the TF reference as the last JSON line."""

    def run_container(self, *, step: str, image: str, args: List[str], **kwargs: object) -> str:
        super().run_container(step=step, image=image, args=args, **kwargs)
        return 'log line\n{"compiled": "2026.4.1", "vs_tf": {"max_abs": 1.67e-06, "passed": true}}\n'


def test_a_load_shows_how_close_the_ir_stays_to_tf_in_that_runtime(tmp_path):
    result = _run(tmp_path, {"synthetic-small-ov2026.4": {}}, ReportingDocker())
    assert result["loads"] == {"convert-ov2026.4": {"synthetic-small-ov2026.4": "ok, max |Δ| 1.7e-06"}}
    assert "| synthetic-small-ov2026.4 | ok, max \\|Δ\\| 1.7e-06 |" in (tmp_path / "matrix" / "matrix.md").read_text()


def test_images_that_share_a_lock_are_one_runtime_of_the_load_matrix(tmp_path):
    docker = FakeDocker()
    result = _run(tmp_path, {"synthetic-small-ov2026.4": {}, "synthetic-small-ovc": {}, "synthetic-small-convert-model": {}}, docker)
    assert list(result["loads"]) == ["convert-ov2026.4"]
    assert sorted(result["loads"]["convert-ov2026.4"]) == ["synthetic-small-convert-model", "synthetic-small-ov2026.4",
                                                           "synthetic-small-ovc"]
