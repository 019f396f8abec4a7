"""Rebuild on change: each kind of change reruns exactly the stages it affects, nothing else.

The stage list is what `invoke build` prints (`[T] stage: running (why)`). The base is
`given-small`, synthetic-small's architecture with its checkpoint given in the release
layout (an input, not a stage), built once; each test changes one thing in a private copy
of its artifacts (and of the checkout, for Dockerfile and src/ edits) and builds again.
"""
from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Dict, List

from tests.e2e.workspace import STAGES, checkout_copy, ran, write_checkpoint


def test_the_base_build_ran_every_stage_and_a_second_runs_none(given_small, space):
    assert ran(given_small["output"]) == STAGES  # type: ignore[arg-type]
    assert ran(space.build().stdout) == []


def test_a_checkpoint_file_nothing_reads_reruns_freeze_only(space):
    """freeze's key holds every checkpoint file; its output is unchanged, so nothing after it reruns."""
    with open(space.layout.checkpoint_dir / "flags.txt", "a") as handle:
        handle.write("--comment=edited\n")
    output = space.build().stdout
    assert ran(output) == ["freeze"]
    assert "[given-small] freeze: running (inputs, image or configuration changed)" in output


def test_new_weights_rerun_every_stage(docker, space):
    configured = space.targets.read_text()
    space.set_key("seed = 7")
    before = space.layout.ir_bin.read_bytes()
    shutil.rmtree(str(space.layout.checkpoint_dir))
    write_checkpoint(docker, space.targets, space.artifacts)
    space.targets.write_text(configured)  # the configuration as before: only the weights differ
    assert ran(space.build().stdout) == STAGES
    assert space.layout.ir_bin.read_bytes() != before


def test_a_description_reruns_nothing(space):
    space.edit_targets("its checkpoint given as a release's is", "edited")
    assert ran(space.build().stdout) == []


def image_tags(space) -> Dict[str, str]:
    """stage -> the content tag of the image the last build used (manifest.json)."""
    images = json.loads((space.layout.target_dir / "manifest.json").read_text())["images"]
    return {stage: image["tag"] for stage, image in images.items()}


def f16_constants(ir_xml: Path) -> List[str]:
    """element_type of each Const layer of an IR."""
    root = ElementTree.parse(str(ir_xml)).getroot()
    return [layer.find("data").get("element_type") for layer in root.iter("layer") if layer.get("type") == "Const"]


def test_a_convert_only_value_reruns_convert_and_check_only_fp16(space):
    """ir_precision = "FP16": the IR holds f16 weights, and the check holds it to FP16's own tolerance."""
    fp32_bin = space.layout.ir_bin.stat().st_size
    space.set_key('ir_precision = "FP16"')
    output = space.build().stdout
    assert ran(output) == ["convert", "check"]
    types = f16_constants(space.layout.ir_xml)
    big = [t for t in types if t == "f16"]
    assert len(big) >= 6, types  # every weight matrix and bias of the network
    assert space.layout.ir_bin.stat().st_size < 0.6 * fp32_bin  # the .bin holds them as 2-byte halves
    report = json.loads((space.layout.check_dir / "report.json").read_text())
    assert report["ir_precision"] == "FP16" and report["tolerance"] == 2e-2 and report["passed"] is True
    assert 1e-5 < report["max_scaled"] <= 2e-2  # FP16 rounding shows, within its own bound


def test_a_freeze_value_reruns_every_stage(space):
    space.set_key('lstm = "hoisted"')
    assert ran(space.build().stdout) == STAGES


def test_a_dockerfile_edit_reruns_the_stages_of_its_image(space, tmp_path):
    """A new layer in Dockerfile.convert: a new convert image, so convert and check, not freeze or reference."""
    space.project = checkout_copy(tmp_path / "checkout")
    with open(space.project / "Dockerfile.convert", "a") as handle:
        handle.write('LABEL ds2ir.test="rebuild on a Dockerfile edit"\n')
    before = image_tags(space)
    assert ran(space.build().stdout) == ["convert", "check"]
    after = image_tags(space)
    assert after["freeze"] == before["freeze"] and after["convert"] != before["convert"]


def test_a_src_edit_gives_new_images_and_reruns_every_stage(space, tmp_path):
    space.project = checkout_copy(tmp_path / "checkout")
    with open(space.project / "src" / "ds2ir" / "model" / "verify.py", "a") as handle:
        handle.write("# edited\n")
    before = image_tags(space)
    assert ran(space.build().stdout) == STAGES
    after = image_tags(space)
    assert after["freeze"] != before["freeze"] and after["convert"] != before["convert"]


def test_a_host_code_edit_rebuilds_no_image_and_reruns_nothing(space, tmp_path):
    """Host code never enters an image (nor its content tag), so a built target stays built."""
    space.project = checkout_copy(tmp_path / "checkout")
    with open(space.project / "src" / "ds2ir" / "host" / "matrix.py", "a") as handle:
        handle.write("# edited\n")
    before = image_tags(space)
    output = space.build().stdout
    assert ran(output) == [] and "ran: nothing (all up to date)" in output, output
    assert image_tags(space) == before


def test_a_lock_build_arg_reruns_convert_and_check_tf_frontend(space):
    """convert_image -> convert-ov2024.6-notf: another lock (build arg) and OpenVINO's TF frontend
    (convert.py) instead of mo, in an image without TensorFlow; the IR still matches TF."""
    space.set_key('convert_image = "convert-ov2024.6-notf"')
    output = space.build().stdout
    assert ran(output) == ["convert", "check"]
    conversion = json.loads((space.layout.ir_dir / "conversion.json").read_text())
    assert conversion["converter"] == "tf-frontend" and "command" not in conversion  # no mo
    assert conversion["frozen"] == {"input_lengths": [16]} and conversion["compress_to_fp16"] is False
    assert conversion["inputs"] == {"input_lengths": [1], "input_node": [1, 16, 19, 26],
                                    "previous_state_c": [1, 64], "previous_state_h": [1, 64]}
    assert re.match(r"2024\.6\.", conversion["openvino"]), conversion
    report = json.loads((space.layout.check_dir / "report.json").read_text())
    assert report["passed"] is True and report["max_scaled"] <= 1e-5
