"""The converters' command lines and the guard on OpenVINO's private graph passes (no Docker, no OpenVINO)."""
from __future__ import annotations

import sys
import types

import pytest

from ds2ir.errors import ConverterError
from ds2ir.model.targets_file import load_target
from ds2ir.stages import convert
from tests._support.checkout import targets_file


def _openvino_release(monkeypatch, passes):  # type: ignore[no-untyped-def]
    """Stand in for an installed OpenVINO whose private module holds only ``passes`` (None: no module at all)."""
    openvino = types.ModuleType("openvino")
    openvino.Core = object  # type: ignore[attr-defined]
    openvino.get_version = lambda: "2027.0.0-future"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "openvino", openvino)
    if passes is None:
        monkeypatch.setitem(sys.modules, "openvino._offline_transformations", None)  # import fails
        return
    private = types.ModuleType("openvino._offline_transformations")
    for name in passes:
        setattr(private, name, lambda *args, **kwargs: None)
    monkeypatch.setitem(sys.modules, "openvino._offline_transformations", private)


def test_the_private_passes_are_used_while_a_release_has_them(monkeypatch):
    _openvino_release(monkeypatch, convert.OFFLINE_PASSES)
    assert convert.offline_transformations() is sys.modules["openvino._offline_transformations"]


@pytest.mark.parametrize("passes, says", [
    (None, "has no module openvino._offline_transformations"),
    (("apply_moc_transformations",), "has no apply_fused_names_cleanup in openvino._offline_transformations"),
])
def test_a_release_without_the_private_passes_gets_a_clear_error(monkeypatch, passes, says):
    _openvino_release(monkeypatch, passes)
    with pytest.raises(ConverterError) as caught:
        convert.offline_transformations()
    message = str(caught.value)
    assert says in message and "OpenVINO 2027.0.0-future" in message
    assert '"convert-model" or "ovc"' in message


def test_ovc_says_the_cut_with_the_graphs_own_tensor_names():
    target = load_target(targets_file(), "synthetic-small-ovc")
    command = convert.ovc_command(target, convert.STAGING / "in.pb", convert.STAGING)
    assert command == [
        "ovc", "/tmp/ds2ir-convert/in.pb",
        "--input", "input_lengths:0[1],input_node:0[1,16,19,26],previous_state_h:0[1,64],previous_state_c:0[1,64]",
        "--output", "logits:0,new_state_c:0,new_state_h:0",
        "--output_model", "/tmp/ds2ir-convert/ovc/output_graph.xml", "--compress_to_fp16=False",
    ]
    assert target.convert_image.converter == "ovc"
    assert load_target(targets_file(), "synthetic-small-convert-model").convert_image.converter == "convert-model"
