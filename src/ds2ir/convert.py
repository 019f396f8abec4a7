"""Convert the frozen graph to an OpenVINO IR (convert image), with the image's converter.

``mo`` (Model Optimizer, needs TensorFlow in the image) records its command line in the
IR's rt_info, so it always runs on the same in-container paths: the frozen graph at
/artifacts/<target>/frozen/output_graph.pb and a fixed staging directory. ``tf-frontend``
drives OpenVINO's TensorFlow frontend directly, the steps mo takes for the same
arguments, in an image without TensorFlow. The finished IR is moved into place atomically.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

from ds2ir import atomic
from ds2ir.config import INPUT_LENGTHS, ArtifactLayout, Target
from ds2ir.errors import MissingInputError
from ds2ir.ov_runtime import openvino_version
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


def frontend_conversion(target: Target, frozen_graph: Path, output_dir: Path) -> Dict[str, object]:
    """What mo does with :meth:`Target.mo_arguments`, through OpenVINO's TF frontend (no TensorFlow needed).

    Cut the graph at the IR's inputs and outputs, fix the input shapes, freeze
    ``input_lengths`` to [n_steps] (mo's ``input_lengths->[16]``), convert, then apply the
    graph passes mo applies before it writes an IR (without them shape subgraphs stay in
    the IR and 2022.3's CPU plugin cannot compile its LSTMCell). Returns the settings,
    for conversion.json.
    """
    import numpy as np
    from openvino import PartialShape, Type, save_model
    from openvino._offline_transformations import apply_fused_names_cleanup, apply_moc_transformations
    from openvino.frontend import FrontEndManager

    frontend = FrontEndManager().load_by_framework("tf")
    model = frontend.load(str(frozen_graph))
    inputs = {INPUT_LENGTHS: (1,), **target.ir_inputs()}
    model.extract_subgraph([model.get_place_by_tensor_name(name) for name in inputs],
                           [model.get_place_by_tensor_name(name) for name in target.ir_outputs()])
    for name, shape in inputs.items():
        model.set_partial_shape(model.get_place_by_tensor_name(name), PartialShape(list(shape)))
    lengths = model.get_place_by_tensor_name(INPUT_LENGTHS)
    model.set_element_type(lengths, Type.i32)
    model.set_tensor_value(lengths, np.array([target.architecture.n_steps], np.int32))
    compress = target.ir_precision == "FP16"
    output_dir.mkdir(parents=True)
    converted = frontend.convert(model)
    apply_moc_transformations(converted, cf=False, smart_reshape=True)
    apply_fused_names_cleanup(converted)
    save_model(converted, str(output_dir / (MODEL_NAME + ".xml")), compress_to_fp16=compress)
    return {"inputs": {name: list(shape) for name, shape in inputs.items()}, "outputs": list(target.ir_outputs()),
            "frozen": {INPUT_LENGTHS: [target.architecture.n_steps]}, "compress_to_fp16": compress}


def compress_weights_int8(ir_xml: Path) -> Dict[str, object]:
    """Rewrite the IR with int8 weights (NNCF's data-free weight compression, per-channel asymmetric).

    Activations stay in floating point; only the constant matrices shrink to a quarter,
    which is what a bandwidth-bound LSTM step pays for.
    """
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir_xml))
    compressed = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    staged = ir_xml.with_name("compressed.xml")
    ov.save_model(compressed, str(staged), compress_to_fp16=False)
    for suffix in (".xml", ".bin"):
        staged.with_suffix(suffix).replace(ir_xml.with_suffix(suffix))
    return {"library": "nncf", "version": nncf.__version__, "mode": "INT8_ASYM"}


def convert(target: Target, layout: ArtifactLayout, runner: Runner) -> Dict[str, object]:
    """Make the IR with the image's converter and publish ir/output_graph.{xml,bin}; return conversion.json's content."""
    if not layout.frozen_graph.is_file():
        raise MissingInputError(f"The frozen graph {layout.frozen_graph} does not exist; run the freeze stage first ('invoke freeze').")
    if STAGING.exists():
        shutil.rmtree(STAGING)
    converter = target.convert_image.converter
    record: Dict[str, object]
    if converter == "tf-frontend":
        record = frontend_conversion(target, layout.frozen_graph, STAGING)
    else:
        command = mo_command(target, layout.frozen_graph, STAGING)
        runner.run(command, step="model optimizer")
        record = {"command": command}
    if target.weight_compression == "int8":
        record["weight_compression"] = compress_weights_int8(STAGING / (MODEL_NAME + ".xml"))
    record.update(converter=converter, openvino=openvino_version())
    with atomic.atomic_dir(layout.ir_dir) as tmp:
        for suffix in (".xml", ".bin"):
            shutil.copyfile(str(STAGING / (MODEL_NAME + suffix)), str(tmp / (MODEL_NAME + suffix)))
        atomic.write_json(tmp / "conversion.json", record)
    shutil.rmtree(STAGING, ignore_errors=True)
    return record
