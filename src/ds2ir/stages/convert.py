"""Convert the frozen graph to an OpenVINO IR (convert image), with the image's converter.

``mo`` (Model Optimizer, needs TensorFlow in the image) records its command line in the
IR's rt_info, so it runs exactly the OpenVINO guide's command (no output directory or
model name: the IR's .xml is the guide's, byte for byte) in a fixed staging directory. ``tf-frontend``
drives OpenVINO's TensorFlow frontend directly, the steps mo takes for the same
arguments, in an image without TensorFlow. ``ovc`` and ``convert-model`` are OpenVINO's
public converters (2023.1+): they select among the frozen graph's own inputs and outputs
(``input_node:0``, ``new_state_c:0``...) but cannot freeze an input to a value, so ds2ir
freezes ``input_lengths`` afterwards with the public graph API (:func:`freeze_input_lengths`).
The finished IR is moved into place atomically.
"""
from __future__ import annotations

import importlib
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Tuple

from ds2ir import atomic
from ds2ir.errors import ConverterError, MissingInputError
from ds2ir.model.architecture import (
    INPUT_LENGTHS,
    INPUT_NODE,
    LOGITS,
    NEW_STATE_C,
    NEW_STATE_H,
    PREVIOUS_STATE_C,
    PREVIOUS_STATE_H,
)
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets import Target
from ds2ir.runner import Runner
from ds2ir.stages.ov_runtime import openvino_version

STAGING = Path("/tmp/ds2ir-convert")
MODEL_NAME = "output_graph"


def mo_arguments(target: Target) -> List[str]:
    """Model Optimizer's shape and cut arguments, computed from the architecture.

    ``input_lengths`` is frozen to n_steps (the application always feeds full
    windows); the outputs are the LSTM's final h and c and the softmaxed logits.
    Every supported mo (2022.3 LTS and 2024.6) takes ``--compress_to_fp16=BOOL``;
    it is always given, since its default changed (False in 2022.3, True from 2023.0).
    """
    arch = target.architecture
    n, w, f, h = arch.n_steps, arch.window_width, arch.n_input, arch.n_hidden
    inputs = (  # written as the guide writes them: mo records this text in the IR's rt_info
        f"{INPUT_LENGTHS}->[{n}],{INPUT_NODE}[1,{n},{w},{f}],"
        f"{PREVIOUS_STATE_H}[1,{h}],{PREVIOUS_STATE_C}[1,{h}]"
    )
    return [
        "--input", inputs,
        "--output", ",".join(target.ir_outputs()),
        f"--compress_to_fp16={target.ir_precision == 'FP16'}",
    ]


def mo_command(target: Target, frozen_graph: Path) -> List[str]:
    """The OpenVINO guide's Model Optimizer command line, its --input/--output computed per target.

    Nothing more: mo records every argument it is given in the IR's rt_info, so an
    ``--output_dir`` or ``--model_name`` would make our .xml differ from the guide's. mo
    writes into the directory it runs in (:func:`convert` runs it in :data:`STAGING`) and
    names the IR after the graph, output_graph.pb -> :data:`MODEL_NAME`.
    """
    return ["mo", "--input_model", str(frozen_graph), *mo_arguments(target)]


#: the frozen graph's own outputs that carry the IR's outputs (Identity nodes over the LSTM's final c and h):
#: ovc and convert_model select outputs among these and fail on inner nodes ("Name
#: cudnn_lstm/.../GatherNd_1 is not found among model outputs.")
GRAPH_OUTPUTS = (LOGITS, NEW_STATE_C, NEW_STATE_H)
#: the private passes the ``tf-frontend`` converter applies, as mo and ovc do before writing an IR
OFFLINE_PASSES = ("apply_moc_transformations", "apply_fused_names_cleanup")


def offline_transformations() -> ModuleType:
    """``openvino._offline_transformations`` with the passes ``tf-frontend`` needs, or a clear error.

    The module is private: OpenVINO may rename or drop it in any release. ovc and
    convert_model apply the same passes through public API, so they are the way out.
    """
    try:
        module = importlib.import_module("openvino._offline_transformations")
    except ImportError as exc:
        raise ConverterError(_passes_missing(f"has no module openvino._offline_transformations ({exc})")) from exc
    missing = [name for name in OFFLINE_PASSES if not hasattr(module, name)]
    if missing:
        raise ConverterError(_passes_missing(f"has no {', '.join(missing)} in openvino._offline_transformations"))
    return module


def _passes_missing(what: str) -> str:
    return (f"The converter 'tf-frontend' needs OpenVINO's private graph passes ({', '.join(OFFLINE_PASSES)}), but "
            f"OpenVINO {openvino_version()} in this image {what}. Set the convert image's converter in targets.toml "
            f"to \"convert-model\" or \"ovc\" (public API), or pin an OpenVINO release that has them (2024.6-2026.4 do).")


def public_cut(target: Target) -> Tuple[List[Tuple[str, List[int]]], List[str]]:
    """The guide's cut as ovc and convert_model can say it: graph tensor names, static shapes."""
    inputs = {INPUT_LENGTHS: (1,), **target.ir_inputs()}
    return [(name + ":0", list(shape)) for name, shape in inputs.items()], [name + ":0" for name in GRAPH_OUTPUTS]


def ovc_command(target: Target, frozen_graph: Path, output_dir: Path) -> List[str]:
    """The ovc command line of the cut (``input_lengths`` stays an input: ovc cannot freeze it).

    It writes to ``output_dir``/ovc: the IR read back from there is memory-mapped, so the
    frozen IR must go to another file.
    """
    inputs, outputs = public_cut(target)
    return [
        "ovc", str(frozen_graph),
        "--input", ",".join(f"{name}[{','.join(map(str, shape))}]" for name, shape in inputs),
        "--output", ",".join(outputs),
        "--output_model", str(output_dir / "ovc" / (MODEL_NAME + ".xml")),
        f"--compress_to_fp16={target.ir_precision == 'FP16'}",
    ]


def freeze_input_lengths(model: Any, n_steps: int) -> Any:  # openvino.Model in and out (untyped)
    """mo's ``input_lengths->[n_steps]`` after the fact, with public API only.

    Replace the ``input_lengths`` parameter by a constant, fold what it fed, and give the
    remaining inputs the guide's plain names (``input_node`` beside ``input_node:0``).
    """
    import numpy as np
    from openvino import opset8
    from openvino.passes import ConstantFolding, Manager

    lengths = [p for p in model.get_parameters() if INPUT_LENGTHS + ":0" in p.output(0).get_names()]
    if len(lengths) != 1:
        raise ConverterError(f"The converted model has no single input '{INPUT_LENGTHS}:0' to freeze (inputs: "
                             f"{[sorted(p.output(0).get_names()) for p in model.get_parameters()]}).")
    lengths[0].output(0).replace(opset8.constant(np.array([n_steps], np.int32)).output(0))
    model.remove_parameter(lengths[0])
    passes = Manager()
    passes.register_pass(ConstantFolding())
    passes.run_passes(model)
    for port in model.inputs:
        port.get_tensor().add_names({name[:-2] for name in port.get_names() if name.endswith(":0")})
    return model


def public_conversion(target: Target, frozen_graph: Path, output_dir: Path, runner: Runner) -> Dict[str, object]:
    """``ovc`` (the command line, recorded) or ``convert_model`` (Python), then :func:`freeze_input_lengths`."""
    import openvino as ov

    compress = target.ir_precision == "FP16"
    inputs, outputs = public_cut(target)
    ir_xml = output_dir / (MODEL_NAME + ".xml")
    record: Dict[str, object] = {"inputs": dict(inputs), "outputs": outputs,
                                 "frozen": {INPUT_LENGTHS: [target.architecture.n_steps]}, "compress_to_fp16": compress}
    if target.convert_image.converter == "ovc":
        command = ovc_command(target, frozen_graph, output_dir)
        runner.run(command, step="ovc")
        model = ov.Core().read_model(str(output_dir / "ovc" / (MODEL_NAME + ".xml")))
        record["command"] = command
    else:
        output_dir.mkdir(parents=True)
        model = ov.convert_model(str(frozen_graph), input=[(name, shape) for name, shape in inputs], output=outputs)
    ov.save_model(freeze_input_lengths(model, target.architecture.n_steps), str(ir_xml), compress_to_fp16=compress)
    return record


def frontend_conversion(target: Target, frozen_graph: Path, output_dir: Path) -> Dict[str, object]:
    """What mo does with :func:`mo_arguments`, through OpenVINO's TF frontend (no TensorFlow needed).

    Cut the graph at the IR's inputs and outputs, fix the input shapes, freeze
    ``input_lengths`` to [n_steps] (mo's ``input_lengths->[16]``), convert, then apply the
    graph passes mo applies before it writes an IR (without them shape subgraphs stay in
    the IR and 2022.3's CPU plugin cannot compile its LSTMCell). Returns the settings,
    for conversion.json.
    """
    import numpy as np
    from openvino import PartialShape, Type, save_model
    from openvino.frontend import FrontEndManager

    passes = offline_transformations()

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
    passes.apply_moc_transformations(converted, cf=False, smart_reshape=True)
    passes.apply_fused_names_cleanup(converted)
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
    elif converter in ("ovc", "convert-model"):
        record = public_conversion(target, layout.frozen_graph, STAGING, runner)
    else:
        command = mo_command(target, layout.frozen_graph)
        STAGING.mkdir(parents=True)
        runner.run(command, step="model optimizer", cwd=STAGING)
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
