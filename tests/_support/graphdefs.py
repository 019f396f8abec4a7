"""Small frozen GraphDefs and .pbmm files written byte by byte, for tests without TensorFlow.

The encoding is written here independently of ds2ir.model.pbmm, so a test compares the module
against a second implementation of the same protobuf fields, not against itself.
"""
from __future__ import annotations

import struct
from typing import Dict, List, Optional, Sequence, Tuple

DT_FLOAT, DT_INT32 = 1, 3


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def number(field_number: int, value: int) -> bytes:
    return varint(field_number << 3) + varint(value)


def shape(dims: Sequence[int]) -> bytes:
    return b"".join(field(2, number(1, size)) for size in dims)


def attr(key: str, value: bytes) -> bytes:
    return field(5, field(1, key.encode()) + field(2, value))


def const(name: str, dtype: int, dims: Sequence[int], content: bytes) -> bytes:
    """A NodeDef as TensorFlow's deterministic serialization writes a frozen Const."""
    tensor = number(1, dtype) + field(2, shape(dims)) + field(4, content)
    return field(1, name.encode()) + field(2, b"Const") + attr("dtype", number(6, dtype)) + attr("value", field(8, tensor))


def immutable_const(name: str, dtype: int, dims: Sequence[int], region: str) -> bytes:
    return (field(1, name.encode()) + field(2, b"ImmutableConst") + attr("dtype", number(6, dtype))
            + attr("memory_region_name", field(2, region.encode())) + attr("shape", field(7, shape(dims))))


def op(name: str, op_type: str, *inputs: str) -> bytes:
    return field(1, name.encode()) + field(2, op_type.encode()) + b"".join(field(3, i.encode()) for i in inputs)


def graph(*nodes: bytes) -> bytes:
    """A GraphDef of ``nodes`` with producer 38 (GraphDef.versions), as TF 1.15 writes."""
    return b"".join(field(1, node) for node in nodes) + field(4, number(1, 38))


def weights(count: int, seed: int = 0) -> bytes:
    return struct.pack(f"<{count}f", *[(i * 7 + seed) % 13 / 13.0 for i in range(count)])


def small_graph() -> bytes:
    """weights (3000 floats: memory-mapped), bias (4 floats: stays Const), a MatMul and an Add."""
    return graph(
        op("input", "Placeholder"),
        const("layer_1/weights", DT_FLOAT, [1000, 3], weights(3000)),
        const("layer_1/bias", DT_FLOAT, [3], weights(3, seed=5)),
        op("MatMul", "MatMul", "input", "layer_1/weights"),
        op("logits", "Add", "MatMul", "layer_1/bias"),
    )


def package(regions: List[Tuple[str, bytes]], *, align: int = 64, lengths: bool = True,
            claim: Optional[Dict[str, int]] = None) -> bytes:
    """A .pbmm of (name, bytes) regions in order, each aligned to ``align``; the last one is the graph.
    ``claim`` gives regions a length in the directory other than their own."""
    out = bytearray()
    directory = bytearray()
    for index, (name, data) in enumerate(regions):
        if index < len(regions) - 1:
            out += bytes(-len(out) % align)
        element = number(1, len(out)) + field(2, name.encode()) + (number(3, (claim or {}).get(name, len(data))) if lengths else b"")
        directory += field(1, element)
        out += data
    return bytes(out + directory + struct.pack("<Q", len(out)))
