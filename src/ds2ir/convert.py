"""Convert the frozen graph to an OpenVINO IR with Model Optimizer (convert image).

mo records its command line in the IR's rt_info, so it always runs on the same
in-container paths: the frozen graph at /artifacts/<target>/frozen/output_graph.pb and
a fixed staging directory. The finished IR is then moved into place atomically.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List

from ds2ir import atomic
from ds2ir.config import ArtifactLayout, Target
from ds2ir.errors import MissingInputError
from ds2ir.runner import Runner

STAGING = Path("/tmp/ds2ir-convert")
MODEL_NAME = "output_graph"


def mo_command(target: Target, frozen_graph: Path, output_dir: Path) -> List[str]:
    """The Model Optimizer command line: the seed's --input/--output, computed per target."""
    return [
        "mo",
        "--input_model", str(frozen_graph),
        *target.mo_arguments(),
        "--output_dir", str(output_dir),
        "--model_name", MODEL_NAME,
    ]


def convert(target: Target, layout: ArtifactLayout, runner: Runner) -> List[str]:
    """Run mo and publish ir/output_graph.{xml,bin}; return the command that ran."""
    if not layout.frozen_graph.is_file():
        raise MissingInputError(f"The frozen graph {layout.frozen_graph} does not exist; run the freeze stage first ('invoke freeze').")
    if STAGING.exists():
        shutil.rmtree(STAGING)
    command = mo_command(target, layout.frozen_graph, STAGING)
    runner.run(command, step="model optimizer")
    with atomic.atomic_dir(layout.ir_dir) as tmp:
        for suffix in (".xml", ".bin"):
            shutil.copyfile(str(STAGING / (MODEL_NAME + suffix)), str(tmp / (MODEL_NAME + suffix)))
        atomic.write_json(tmp / "conversion.json", {"command": command, "openvino": openvino_version()})
    shutil.rmtree(STAGING, ignore_errors=True)
    return command


def openvino_version() -> str:
    import openvino as ov

    return ov.get_version()
