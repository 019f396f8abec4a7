"""ds2ir.model.pbmm: TensorFlow's memory-mapped model format, packed and unpacked, and refused when malformed."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ds2ir.errors import ModelFileError
from ds2ir.model import pbmm
from tests._support.graphdefs import DT_FLOAT, const, graph, immutable_const, op, package, small_graph, weights

PREFIX = "memmapped_package://"


def test_pack_maps_large_constants_into_aligned_regions_and_unpack_restores_the_graph_byte_for_byte():
    packed = pbmm.pack(small_graph(), "g.pb")
    regions = pbmm.read_directory(packed, "g.pbmm")
    assert set(regions) == {PREFIX + "layer_1_weights", pbmm.GRAPH_REGION}  # the 12-byte bias stays a Const
    weights_region = regions[PREFIX + "layer_1_weights"]
    assert weights_region.offset % 512 == 0 and weights_region.length == 12000 and weights_region.exact
    assert packed[weights_region.offset:weights_region.offset + 12000] == weights(3000)
    assert struct.unpack("<Q", packed[-8:])[0] == regions[pbmm.GRAPH_REGION].offset + regions[pbmm.GRAPH_REGION].length
    assert b"ImmutableConst" in packed and pbmm.is_memmapped(packed) and not pbmm.is_graph_def(packed)
    assert pbmm.unpack(packed, "g.pbmm") == small_graph()


def test_pack_is_deterministic_and_aligns_every_region():
    nodes = [const(f"w{i}", DT_FLOAT, [2501 + i], weights(2501 + i, seed=i)) for i in range(3)]
    packed = pbmm.pack(graph(*nodes), "g.pb")
    assert packed == pbmm.pack(graph(*nodes), "g.pb")
    regions = pbmm.read_directory(packed, "g.pbmm")
    assert all(region.offset % pbmm.ALIGNMENT == 0 for name, region in regions.items() if name != pbmm.GRAPH_REGION)
    assert pbmm.unpack(packed, "g.pbmm") == graph(*nodes)


def test_region_names_are_sanitized_and_unique():
    nodes = [const("a/b:0", DT_FLOAT, [2600], weights(2600)), const("a_b_0", DT_FLOAT, [2600], weights(2600, 1))]
    regions = pbmm.read_directory(pbmm.pack(graph(*nodes), "g.pb"), "g.pbmm")
    assert set(regions) == {PREFIX + "a_b_0", PREFIX + "a_b_0_", pbmm.GRAPH_REGION}


def test_unpack_reads_files_of_older_writers_without_region_lengths():
    """TensorFlow's older writer aligns to 64 bytes and gives no lengths: a region spans up to the next one."""
    node = immutable_const("w", DT_FLOAT, [1000, 3], PREFIX + "w")
    packed = package([(PREFIX + "w", weights(3000)), (PREFIX + "b", weights(5)),
                      (pbmm.GRAPH_REGION, graph(node, op("y", "Identity", "w")))], lengths=False)
    unpacked = pbmm.unpack(packed, "old.pbmm")
    assert unpacked == graph(const("w", DT_FLOAT, [1000, 3], weights(3000)), op("y", "Identity", "w"))


def test_truncated_file_is_refused():
    packed = pbmm.pack(small_graph(), "g.pb")
    for cut in (len(packed) // 2, len(packed) - 3, 5):
        with pytest.raises(ModelFileError, match="not a usable memory-mapped model"):
            pbmm.unpack(packed[:cut], "cut.pbmm")
    with pytest.raises(ModelFileError, match="too few for a directory"):
        pbmm.unpack(packed[:5], "cut.pbmm")


def test_directory_offset_past_the_end_is_refused():
    packed = pbmm.pack(small_graph(), "g.pb")
    bad = packed[:-8] + struct.pack("<Q", len(packed) + 100)
    with pytest.raises(ModelFileError, match=r"directory offset \d+, past the end"):
        pbmm.unpack(bad, "bad.pbmm")


def test_missing_region_is_refused():
    node = immutable_const("w", DT_FLOAT, [1000, 3], PREFIX + "elsewhere")
    packed = package([(PREFIX + "w", weights(3000)), (pbmm.GRAPH_REGION, graph(node))])
    with pytest.raises(ModelFileError, match="ImmutableConst 'w' points at region 'memmapped_package://elsewhere', "
                                             "which the directory does not list"):
        pbmm.unpack(packed, "m.pbmm")


def test_missing_graph_region_is_refused():
    with pytest.raises(ModelFileError, match="lists no graph region"):
        pbmm.unpack(package([(PREFIX + "w", weights(3000)), (PREFIX + "x", b"not a graph")]), "m.pbmm")


def test_region_out_of_bounds_is_refused():
    graph_def = graph(immutable_const("w", DT_FLOAT, [1000, 3], PREFIX + "w"))
    bad = package([(PREFIX + "w", weights(3000)), (pbmm.GRAPH_REGION, graph_def)],
                  claim={pbmm.GRAPH_REGION: len(graph_def) + 4096})
    with pytest.raises(ModelFileError, match=r"region 'memmapped_package://\.' \(\d+ bytes at offset \d+\) runs past"):
        pbmm.unpack(bad, "oob.pbmm")


def test_region_size_that_disagrees_with_dtype_and_shape_is_refused():
    node = immutable_const("w", DT_FLOAT, [1000, 4], PREFIX + "w")  # 16000 bytes, the region has 12000
    packed = package([(PREFIX + "w", weights(3000)), (pbmm.GRAPH_REGION, graph(node))])
    with pytest.raises(ModelFileError, match=r"ImmutableConst 'w' \(DataType 1, shape \[1000, 4\]: 16000 bytes\) "
                                             r"points at region 'memmapped_package://w' of 12000 bytes"):
        pbmm.unpack(packed, "size.pbmm")
    legacy = package([(PREFIX + "w", weights(3000)), (pbmm.GRAPH_REGION, graph(node))], lengths=False)
    with pytest.raises(ModelFileError, match="points at region 'memmapped_package://w' of 12000 bytes"):
        pbmm.unpack(legacy, "size.pbmm")


def test_unaligned_region_is_refused():
    node = immutable_const("w", DT_FLOAT, [1000, 3], PREFIX + "w")
    packed = package([(PREFIX + "pad", b"x"), (PREFIX + "w", weights(3000)), (pbmm.GRAPH_REGION, graph(node))], align=4)
    with pytest.raises(ModelFileError, match="starts at offset 4, not a multiple of 64"):
        pbmm.unpack(packed, "unaligned.pbmm")


def test_plain_pb_where_a_pbmm_is_expected_is_named_as_such():
    with pytest.raises(ModelFileError, match=r"g\.pbmm is a plain frozen GraphDef \(\.pb\), not a memory-mapped model"):
        pbmm.unpack(small_graph(), "g.pbmm")


def test_pbmm_where_a_plain_pb_is_expected_is_named_as_such():
    with pytest.raises(ModelFileError, match=r"g\.pb is a memory-mapped model \(\.pbmm\), not a plain frozen GraphDef"):
        pbmm.pack(pbmm.pack(small_graph(), "g.pb"), "g.pb")


def test_failed_unpack_leaves_the_output_as_it_was(tmp_path: Path):
    source = tmp_path / "bad.pbmm"
    source.write_bytes(pbmm.pack(small_graph(), "g.pb")[:-20])
    output = tmp_path / "frozen" / "output_graph.pb"
    output.parent.mkdir()
    output.write_bytes(b"previous graph")
    with pytest.raises(ModelFileError):
        pbmm.unpack_file(source, output)
    with pytest.raises(ModelFileError, match="does not exist"):
        pbmm.check_file(tmp_path / "absent.pbmm")
    assert output.read_bytes() == b"previous graph" and sorted(p.name for p in output.parent.iterdir()) == ["output_graph.pb"]


def test_files_round_trip(tmp_path: Path):
    (tmp_path / "g.pb").write_bytes(small_graph())
    pbmm.pack_file(tmp_path / "g.pb", tmp_path / "g.pbmm")
    pbmm.check_file(tmp_path / "g.pbmm")
    pbmm.unpack_file(tmp_path / "g.pbmm", tmp_path / "back.pb")
    assert (tmp_path / "back.pb").read_bytes() == small_graph()


def test_weights_that_agree_bit_for_bit_have_no_differences_and_a_changed_one_is_named_with_its_max_delta():
    frozen = small_graph()
    model = pbmm.pack(frozen, "g.pb")
    names = ["layer_1/bias", "layer_1/weights"]
    assert pbmm.weight_differences(frozen, model, names, model_source="m.pbmm") == {}
    changed = bytearray(weights(3000))
    changed[4:8] = struct.pack("<f", struct.unpack("<f", changed[4:8])[0] + 0.25)
    other = graph(op("input", "Placeholder"), const("layer_1/weights", DT_FLOAT, [1000, 3], bytes(changed)),
                  const("layer_1/bias", DT_FLOAT, [3], weights(3, seed=5)))
    assert pbmm.weight_differences(other, model, names, model_source="m.pbmm") == {"layer_1/weights": 0.25}
    missing = pbmm.weight_differences(frozen, model, names + ["layer_2/weights"], model_source="m.pbmm")
    assert missing == {"layer_2/weights": float("inf")}
