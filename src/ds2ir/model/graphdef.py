"""TensorFlow's GraphDef in the protobuf wire format, decoded and encoded by hand.

Only the fields the ``.pbmm`` format (model/pbmm.py) and the weights' agreement check need are
read: nodes, their name, op and attributes, tensors and shapes. Every other byte of a node is
kept as it was, so a GraphDef rewritten here differs only where it was meant to. Plain Python,
so it runs on the host, in the freeze image (Python 3.7) and in unit tests without TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple, Union

if TYPE_CHECKING:
    import numpy as np

#: bytes per element of the plain-old-data DataType values (tensorflow/core/framework/types.proto)
DTYPE_SIZES = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 10: 1, 11: 1, 12: 1, 13: 4, 14: 2, 15: 2,
               16: 2, 17: 2, 18: 16, 19: 2, 22: 4, 23: 8}

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5
# field numbers (graph.proto, node_def.proto, attr_value.proto, tensor.proto)
GRAPH_NODE = 1
NODE_NAME, NODE_OP, NODE_INPUT, NODE_DEVICE, NODE_ATTR = 1, 2, 3, 4, 5
ATTR_S, ATTR_TYPE, ATTR_SHAPE, ATTR_TENSOR = 2, 6, 7, 8
TENSOR_DTYPE, TENSOR_SHAPE, TENSOR_CONTENT = 1, 2, 4
SHAPE_DIM, SHAPE_UNKNOWN_RANK, DIM_SIZE = 2, 3, 1


class Malformed(Exception):
    """Bytes that are not the protobuf wire format (caught and reported with the file's name)."""


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varint(data: memoryview, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise Malformed("a varint runs past the end")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


class Field(NamedTuple):
    number: int
    wire: int
    value: Union[int, memoryview]  # int for varints, the payload for the others
    raw: memoryview  # the whole field, key included, to copy it unchanged


def read_fields(data: Union[bytes, memoryview]) -> Iterator[Field]:
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        start = pos
        key, pos = read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Malformed("field number 0")
        if wire == VARINT:
            value, pos = read_varint(view, pos)
            yield Field(number, wire, value, view[start:pos])
            continue
        if wire == BYTES:
            size, pos = read_varint(view, pos)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
        else:
            raise Malformed(f"wire type {wire}")
        if pos + size > len(view):
            raise Malformed("a field runs past the end")
        yield Field(number, wire, view[pos:pos + size], view[start:pos + size])
        pos += size


def bytes_field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | BYTES) + varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value)


def text(value: Union[int, memoryview]) -> str:
    if isinstance(value, int):
        raise Malformed("a string field holds a number")
    return bytes(value).decode("utf-8", errors="replace")


class Node:
    """A NodeDef as the fields this module reads or rewrites, plus the others verbatim."""

    def __init__(self, name: str, op: str, attrs: Dict[str, memoryview], before: bytes, after: bytes):
        self.name, self.op, self.attrs, self.before, self.after = name, op, attrs, before, after

    @classmethod
    def parse(cls, data: memoryview) -> "Node":
        name = op = ""
        attrs: Dict[str, memoryview] = {}
        before, after = bytearray(), bytearray()  # inputs and device; fields after the attributes
        for field in read_fields(data):
            if field.number == NODE_NAME:
                name = text(field.value)
            elif field.number == NODE_OP:
                op = text(field.value)
            elif field.number == NODE_ATTR and isinstance(field.value, memoryview):
                key, value = "", memoryview(b"")
                for entry in read_fields(field.value):
                    if entry.number == 1:
                        key = text(entry.value)
                    elif entry.number == 2 and isinstance(entry.value, memoryview):
                        value = entry.value
                attrs[key] = value
            elif field.number in (NODE_INPUT, NODE_DEVICE):
                before += field.raw
            else:
                after += field.raw
        return cls(name, op, attrs, bytes(before), bytes(after))

    def serialize(self, op: str, attrs: Dict[str, bytes]) -> bytes:
        """Fields in number order and attributes sorted by key, as deterministic serialization does."""
        entries = b"".join(bytes_field(NODE_ATTR, bytes_field(1, key.encode()) + bytes_field(2, attrs[key]))
                           for key in sorted(attrs))
        return (bytes_field(NODE_NAME, self.name.encode()) + bytes_field(NODE_OP, op.encode()) + self.before
                + entries + self.after)

    def attr(self, key: str, number: int) -> Optional[Union[int, memoryview]]:
        """Field ``number`` of attribute ``key``'s AttrValue, or None."""
        if key not in self.attrs:
            return None
        for field in read_fields(self.attrs[key]):
            if field.number == number:
                return field.value
        return None


def shape_dims(shape: memoryview) -> Optional[List[int]]:
    """The dimensions of a TensorShapeProto; None when unknown (unknown rank or a -1 dimension)."""
    dims = []
    for field in read_fields(shape):
        if field.number == SHAPE_UNKNOWN_RANK and field.value:
            return None
        if field.number == SHAPE_DIM and isinstance(field.value, memoryview):
            size = 0
            for dim in read_fields(field.value):
                if dim.number == DIM_SIZE and isinstance(dim.value, int):
                    size = dim.value - (1 << 64) if dim.value >= 1 << 63 else dim.value
            if size < 0:
                return None
            dims.append(size)
    return dims


def byte_size(dtype: int, dims: List[int]) -> int:
    count = 1
    for size in dims:
        count *= size
    return count * DTYPE_SIZES[dtype]


def constants(graph_def: bytes, names: Iterable[str]) -> Dict[str, "np.ndarray"]:
    """The float32 constants ``names`` of a plain GraphDef that holds them (tensor_content or float_val)."""
    import numpy as np

    wanted, found = set(names), {}
    for field in read_fields(graph_def):
        if field.number != GRAPH_NODE or not isinstance(field.value, memoryview):
            continue
        node = Node.parse(field.value)
        tensor = node.attr("value", ATTR_TENSOR) if node.op == "Const" and node.name in wanted else None
        if not isinstance(tensor, memoryview):
            continue
        parts = {f.number: f.value for f in read_fields(tensor)}
        shape = parts.get(TENSOR_SHAPE)
        dims = shape_dims(shape) if isinstance(shape, memoryview) else []
        if parts.get(TENSOR_DTYPE) != 1 or dims is None:  # DT_FLOAT
            continue
        content, values = parts.get(TENSOR_CONTENT), parts.get(5)  # float_val: packed, the last one repeated
        if isinstance(content, memoryview):
            array = np.frombuffer(bytes(content), "<f4")
        elif isinstance(values, memoryview):
            array = np.frombuffer(bytes(values), "<f4")
            array = np.concatenate([array, np.repeat(array[-1:], int(np.prod(dims)) - len(array))])
        else:
            continue
        found[node.name] = array.reshape(dims)
    return found
