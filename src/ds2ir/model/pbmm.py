"""TensorFlow's memory-mapped model format (``.pbmm``), read and written in plain Python.

A ``.pbmm`` (TensorFlow's ``MemmappedFileSystemDirectory``, the file DeepSpeech's native
client loads) is a row of byte regions, then a directory (a ``MemmappedFileSystemDirectory``
protobuf: per region its offset, ``memmapped_package://`` name and length), then the
directory's offset as 8 little-endian bytes. The region ``memmapped_package://.`` holds a
GraphDef whose large constants are ``ImmutableConst`` nodes (attributes ``dtype``, ``shape``,
``memory_region_name``) pointing at tensor regions, each aligned so that TensorFlow can map
it straight into a tensor.

Only the few protobuf fields the format needs are decoded here (wire format by hand), so
the same code runs on the host (to refuse a bad file before anything is copied), in the
freeze image (Python 3.7) and in unit tests, and every other byte of the GraphDef is kept
as it was. :func:`unpack` turns each ``ImmutableConst`` back into a ``Const`` holding its
region's bytes; :func:`pack` does the reverse, deterministically.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

from ds2ir import atomic
from ds2ir.errors import ModelFileError

if TYPE_CHECKING:
    import numpy as np

PREFIX = "memmapped_package://"
GRAPH_REGION = PREFIX + "."
#: TensorFlow's Allocator::kAllocatorAlignment: ImmutableConst refuses a region not aligned to it
TF_ALIGNMENT = 64
#: what ds2ir writes: a multiple of TensorFlow's alignment (and of a disk sector)
ALIGNMENT = 512
#: convert_graphdef_memmapped_format's default --min_conversion_tensor_size: smaller constants stay Const
MIN_CONVERSION_BYTES = 10000

#: bytes per element of the plain-old-data DataType values (tensorflow/core/framework/types.proto)
DTYPE_SIZES = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 8: 8, 9: 8, 10: 1, 11: 1, 12: 1, 13: 4, 14: 2, 15: 2,
               16: 2, 17: 2, 18: 16, 19: 2, 22: 4, 23: 8}

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
# field numbers (graph.proto, node_def.proto, attr_value.proto, tensor.proto, memmapped_file_system.proto)
_GRAPH_NODE = 1
_NODE_NAME, _NODE_OP, _NODE_INPUT, _NODE_DEVICE, _NODE_ATTR = 1, 2, 3, 4, 5
_ATTR_S, _ATTR_TYPE, _ATTR_SHAPE, _ATTR_TENSOR = 2, 6, 7, 8
_TENSOR_DTYPE, _TENSOR_SHAPE, _TENSOR_CONTENT = 1, 2, 4
_SHAPE_DIM, _SHAPE_UNKNOWN_RANK, _DIM_SIZE = 2, 3, 1
_ELEMENT_OFFSET, _ELEMENT_NAME, _ELEMENT_LENGTH, _DIRECTORY_ELEMENT = 1, 2, 3, 1


class Region(NamedTuple):
    offset: int
    length: int
    exact: bool  # the directory gave the length; else it is the span up to the next region (older writers)


class _Malformed(Exception):
    """Bytes that are not the protobuf wire format (caught and reported with the file's name)."""


# -- protobuf wire format ----------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: memoryview, pos: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("a varint runs past the end")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


class _Field(NamedTuple):
    number: int
    wire: int
    value: Union[int, memoryview]  # int for varints, the payload for the others
    raw: memoryview  # the whole field, key included, to copy it unchanged


def _fields(data: Union[bytes, memoryview]) -> Iterator[_Field]:
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        start = pos
        key, pos = _read_varint(view, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == _VARINT:
            value, pos = _read_varint(view, pos)
            yield _Field(number, wire, value, view[start:pos])
            continue
        if wire == _BYTES:
            size, pos = _read_varint(view, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
        else:
            raise _Malformed(f"wire type {wire}")
        if pos + size > len(view):
            raise _Malformed("a field runs past the end")
        yield _Field(number, wire, view[pos:pos + size], view[start:pos + size])
        pos += size


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _BYTES) + _varint(len(payload)) + payload


def _varint_field(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value)


def _text(value: Union[int, memoryview]) -> str:
    if isinstance(value, int):
        raise _Malformed("a string field holds a number")
    return bytes(value).decode("utf-8", errors="replace")


# -- the directory -----------------------------------------------------------------------

def read_directory(data: bytes, source: str) -> Dict[str, Region]:
    """name -> region of a ``.pbmm``'s bytes; ModelFileError for a file that is not a sound one."""
    size = len(data)
    if size <= 8:
        raise _bad_pbmm(data, source, f"it has {size} bytes, too few for a directory (a truncated file?)")
    (directory_offset,) = struct.unpack("<Q", data[-8:])
    if directory_offset > size - 8:
        raise _bad_pbmm(data, source, f"its last 8 bytes give the directory offset {directory_offset}, past the "
                                      f"end of its {size} bytes (a truncated file?)")
    try:
        elements = [_element(field.value) for field in _fields(memoryview(data)[directory_offset:size - 8])
                    if field.number == _DIRECTORY_ELEMENT and field.wire == _BYTES]
    except _Malformed as exc:
        raise _bad_pbmm(data, source, f"its directory at offset {directory_offset} cannot be parsed ({exc})") from None
    regions: Dict[str, Region] = {}
    end = directory_offset
    for name, offset, length in reversed(elements):  # as TensorFlow reads it: a region ends where the next begins
        if offset >= end:
            raise _bad_pbmm(data, source, f"region '{name}' starts at {offset}, not before the next region or the "
                                          f"directory at {end}")
        if length > end - offset:
            raise _bad_pbmm(data, source, f"region '{name}' ({length} bytes at offset {offset}) runs past {end}, "
                                          f"where the next region or the directory starts")
        if name in regions:
            raise _bad_pbmm(data, source, f"region '{name}' is listed twice")
        regions[name] = Region(offset, length or end - offset, bool(length))  # 0: a writer older than the field
        end = offset
    if GRAPH_REGION not in regions:
        raise _bad_pbmm(data, source, f"its directory lists no graph region '{GRAPH_REGION}'")
    return regions


def _element(data: Union[int, memoryview]) -> Tuple[str, int, int]:
    if isinstance(data, int):
        raise _Malformed("a directory element is a number")
    name, offset, length = "", 0, 0
    for field in _fields(data):
        if field.number == _ELEMENT_NAME:
            name = _text(field.value)
        elif field.number in (_ELEMENT_OFFSET, _ELEMENT_LENGTH) and isinstance(field.value, int):
            offset, length = (field.value, length) if field.number == _ELEMENT_OFFSET else (offset, field.value)
    return name, offset, length


def is_memmapped(data: bytes) -> bool:
    """Whether ``data`` has a sound ``.pbmm`` directory with a graph region."""
    try:
        read_directory(data, "")
    except ModelFileError:
        return False
    return True


def is_graph_def(data: bytes) -> bool:
    """Whether ``data`` reads as a plain GraphDef: protobuf fields of GraphDef's numbers and kinds, nodes first."""
    kinds = {1: _BYTES, 2: _BYTES, 3: _VARINT, 4: _BYTES}  # node, library, version, versions
    try:
        fields = list(_fields(data))
    except _Malformed:
        return False
    return bool(fields) and fields[0].number == _GRAPH_NODE and all(kinds.get(f.number) == f.wire for f in fields)


# -- unpack: ImmutableConst -> Const ---------------------------------------------------------

def unpack(data: bytes, source: str) -> bytes:
    """The GraphDef of a ``.pbmm`` with every ``ImmutableConst`` turned into a ``Const`` of its region's bytes."""
    regions = read_directory(data, source)
    view = memoryview(data)
    graph = regions[GRAPH_REGION]
    out = bytearray()
    try:
        for field in _fields(view[graph.offset:graph.offset + graph.length]):
            if field.number == _GRAPH_NODE and field.wire == _BYTES and isinstance(field.value, memoryview):
                out += _bytes_field(_GRAPH_NODE, _to_const(_Node.parse(field.value), regions, view, source))
            else:
                out += field.raw
    except _Malformed as exc:
        raise _broken(source, f"its graph region is not a GraphDef ({exc})") from None
    return bytes(out)


class _Node:
    """A NodeDef as the fields this module reads or rewrites, plus the others verbatim."""

    def __init__(self, name: str, op: str, attrs: Dict[str, memoryview], before: bytes, after: bytes):
        self.name, self.op, self.attrs, self.before, self.after = name, op, attrs, before, after

    @classmethod
    def parse(cls, data: memoryview) -> "_Node":
        name = op = ""
        attrs: Dict[str, memoryview] = {}
        before, after = bytearray(), bytearray()  # inputs and device; fields after the attributes
        for field in _fields(data):
            if field.number == _NODE_NAME:
                name = _text(field.value)
            elif field.number == _NODE_OP:
                op = _text(field.value)
            elif field.number == _NODE_ATTR and isinstance(field.value, memoryview):
                key, value = "", memoryview(b"")
                for entry in _fields(field.value):
                    if entry.number == 1:
                        key = _text(entry.value)
                    elif entry.number == 2 and isinstance(entry.value, memoryview):
                        value = entry.value
                attrs[key] = value
            elif field.number in (_NODE_INPUT, _NODE_DEVICE):
                before += field.raw
            else:
                after += field.raw
        return cls(name, op, attrs, bytes(before), bytes(after))

    def serialize(self, op: str, attrs: Dict[str, bytes]) -> bytes:
        """Fields in number order and attributes sorted by key, as deterministic serialization does."""
        entries = b"".join(_bytes_field(_NODE_ATTR, _bytes_field(1, key.encode()) + _bytes_field(2, attrs[key]))
                           for key in sorted(attrs))
        return (_bytes_field(_NODE_NAME, self.name.encode()) + _bytes_field(_NODE_OP, op.encode()) + self.before
                + entries + self.after)

    def attr(self, key: str, number: int) -> Optional[Union[int, memoryview]]:
        """Field ``number`` of attribute ``key``'s AttrValue, or None."""
        if key not in self.attrs:
            return None
        for field in _fields(self.attrs[key]):
            if field.number == number:
                return field.value
        return None


def _shape(shape: memoryview) -> Optional[List[int]]:
    """The dimensions of a TensorShapeProto; None when unknown (unknown rank or a -1 dimension)."""
    dims = []
    for field in _fields(shape):
        if field.number == _SHAPE_UNKNOWN_RANK and field.value:
            return None
        if field.number == _SHAPE_DIM and isinstance(field.value, memoryview):
            size = 0
            for dim in _fields(field.value):
                if dim.number == _DIM_SIZE and isinstance(dim.value, int):
                    size = dim.value - (1 << 64) if dim.value >= 1 << 63 else dim.value
            if size < 0:
                return None
            dims.append(size)
    return dims


def _byte_size(dtype: int, dims: List[int]) -> int:
    count = 1
    for size in dims:
        count *= size
    return count * DTYPE_SIZES[dtype]


def _to_const(node: _Node, regions: Dict[str, Region], view: memoryview, source: str) -> bytes:
    if node.op != "ImmutableConst":
        return node.serialize(node.op, {key: bytes(value) for key, value in node.attrs.items()})
    dtype, shape, region_name = (node.attr("dtype", _ATTR_TYPE), node.attr("shape", _ATTR_SHAPE),
                                 node.attr("memory_region_name", _ATTR_S))
    if not isinstance(dtype, int) or not isinstance(shape, memoryview) or not isinstance(region_name, memoryview):
        raise _broken(source, f"ImmutableConst '{node.name}' lacks its dtype, shape or memory_region_name")
    name = _text(region_name)
    dims = _shape(shape)
    if dtype not in DTYPE_SIZES or dims is None:
        raise _broken(source, f"ImmutableConst '{node.name}' has DataType {dtype} and shape {dims}, "
                                      f"which no memory region can hold")
    if name not in regions:
        raise _broken(source, f"ImmutableConst '{node.name}' points at region '{name}', which the "
                                      f"directory does not list")
    region = regions[name]
    wanted = _byte_size(dtype, dims)
    if (wanted != region.length) if region.exact else not (wanted <= region.length < wanted + ALIGNMENT):
        raise _broken(source, f"ImmutableConst '{node.name}' (DataType {dtype}, shape {dims}: {wanted} "
                                      f"bytes) points at region '{name}' of {region.length} bytes")
    if region.offset % TF_ALIGNMENT:
        raise _broken(source, f"region '{name}' of ImmutableConst '{node.name}' starts at offset "
                                      f"{region.offset}, not a multiple of {TF_ALIGNMENT} as TensorFlow requires")
    content = bytes(view[region.offset:region.offset + wanted])
    tensor = (_varint_field(_TENSOR_DTYPE, dtype) + _bytes_field(_TENSOR_SHAPE, bytes(shape))
              + _bytes_field(_TENSOR_CONTENT, content))
    return node.serialize("Const", {"dtype": _varint_field(_ATTR_TYPE, dtype), "value": _bytes_field(_ATTR_TENSOR, tensor)})


# -- pack: Const -> ImmutableConst -------------------------------------------------------

def pack(graph_def: bytes, source: str, *, min_bytes: int = MIN_CONVERSION_BYTES) -> bytes:
    """A ``.pbmm`` of a frozen GraphDef: each plain-data ``Const`` of ``min_bytes`` or more becomes an
    ``ImmutableConst`` over its own region (512-byte aligned, in node order), the GraphDef goes last.

    The same GraphDef always gives the same bytes.
    """
    if is_memmapped(graph_def) and not is_graph_def(graph_def):
        raise ModelFileError(f"{source} is a memory-mapped model (.pbmm), not a plain frozen GraphDef (.pb). "
                             f"Pass it where a .pbmm is expected (e.g. 'invoke build --model {source}'), or give "
                             f"the frozen .pb it was made from.")
    out = bytearray()
    directory = bytearray()
    graph = bytearray()
    used = set()
    try:
        for field in _fields(graph_def):
            if field.number != _GRAPH_NODE or not isinstance(field.value, memoryview):
                graph += field.raw
                continue
            node = _Node.parse(field.value)
            content = _const_content(node, min_bytes)
            if content is None:
                graph += field.raw
                continue
            region = _region_name(node.name, used)
            out += bytes(-len(out) % ALIGNMENT)
            directory += _element_bytes(region, len(out), len(content))
            out += content
            value = node.attr("value", _ATTR_TENSOR)
            assert isinstance(value, memoryview)
            tensor = {f.number: f.value for f in _fields(value)}
            shape = tensor.get(_TENSOR_SHAPE, memoryview(b""))
            assert isinstance(shape, memoryview)
            graph += _bytes_field(_GRAPH_NODE, node.serialize("ImmutableConst", {
                "dtype": _varint_field(_ATTR_TYPE, int(tensor[_TENSOR_DTYPE])),  # type: ignore[arg-type]
                "shape": _bytes_field(_ATTR_SHAPE, bytes(shape)),
                "memory_region_name": _bytes_field(_ATTR_S, region.encode()),
            }))
    except _Malformed as exc:
        raise ModelFileError(f"{source} is not a frozen GraphDef (.pb): {exc}. Export the model again; "
                             f"nothing was written.") from None
    directory += _element_bytes(GRAPH_REGION, len(out), len(graph))
    out += graph
    directory_offset = len(out)
    return bytes(out + directory + struct.pack("<Q", directory_offset))


def _const_content(node: _Node, min_bytes: int) -> Optional[bytes]:
    """The bytes of a Const worth its own region: plain data, held as tensor_content, of known shape."""
    if node.op != "Const":
        return None
    tensor = node.attr("value", _ATTR_TENSOR)
    if not isinstance(tensor, memoryview):
        return None
    fields = {f.number: f.value for f in _fields(tensor)}
    dtype, shape, content = fields.get(_TENSOR_DTYPE), fields.get(_TENSOR_SHAPE), fields.get(_TENSOR_CONTENT)
    if not isinstance(dtype, int) or dtype not in DTYPE_SIZES or not isinstance(content, memoryview):
        return None
    dims = _shape(shape) if isinstance(shape, memoryview) else []
    if dims is None or len(content) < min_bytes or len(content) != _byte_size(dtype, dims):
        return None
    if set(fields) - {_TENSOR_DTYPE, _TENSOR_SHAPE, _TENSOR_CONTENT, 3}:  # 3: version_number
        return None
    return bytes(content)


def _region_name(node_name: str, used: set) -> str:
    """memmapped_package:// + the node name with characters outside [A-Za-z0-9_.] as '_', made unique."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in node_name)
    while name in used:
        name += "_"
    used.add(name)
    return PREFIX + name


def _element_bytes(name: str, offset: int, length: int) -> bytes:
    element = _varint_field(_ELEMENT_OFFSET, offset) + _bytes_field(_ELEMENT_NAME, name.encode())
    return _bytes_field(_DIRECTORY_ELEMENT, element + _varint_field(_ELEMENT_LENGTH, length))


# -- agreement: the same weights in two graphs ---------------------------------------------

def constants(graph_def: bytes, names: Iterable[str]) -> Dict[str, "np.ndarray"]:
    """The float32 constants ``names`` of a plain GraphDef that holds them (tensor_content or float_val)."""
    import numpy as np

    wanted, found = set(names), {}
    for field in _fields(graph_def):
        if field.number != _GRAPH_NODE or not isinstance(field.value, memoryview):
            continue
        node = _Node.parse(field.value)
        tensor = node.attr("value", _ATTR_TENSOR) if node.op == "Const" and node.name in wanted else None
        if not isinstance(tensor, memoryview):
            continue
        parts = {f.number: f.value for f in _fields(tensor)}
        shape = parts.get(_TENSOR_SHAPE)
        dims = _shape(shape) if isinstance(shape, memoryview) else []
        if parts.get(_TENSOR_DTYPE) != 1 or dims is None:  # DT_FLOAT
            continue
        content, values = parts.get(_TENSOR_CONTENT), parts.get(5)  # float_val: packed, the last one repeated
        if isinstance(content, memoryview):
            array = np.frombuffer(bytes(content), "<f4")
        elif isinstance(values, memoryview):
            array = np.frombuffer(bytes(values), "<f4")
            array = np.concatenate([array, np.repeat(array[-1:], int(np.prod(dims)) - len(array))])
        else:
            continue
        found[node.name] = array.reshape(dims)
    return found


def weight_differences(frozen: bytes, model: bytes, names: Sequence[str], *, model_source: str) -> Dict[str, float]:
    """name -> max |Δ| for each weight ``names`` that differs between a frozen graph and a ``.pbmm``
    (inf when one lacks it or the shapes differ); empty when every one is bitwise equal."""
    import numpy as np

    ours, theirs = constants(frozen, names), constants(unpack(model, model_source), names)
    differences = {}
    for name in names:
        a, b = ours.get(name), theirs.get(name)
        if a is None or b is None or a.shape != b.shape:
            differences[name] = float("inf")
        elif a.tobytes() != b.tobytes():
            differences[name] = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    return differences


# -- files and errors ------------------------------------------------------------------------

def unpack_file(source: Path, output: Path) -> None:
    """Write the GraphDef of the ``.pbmm`` ``source`` to ``output`` atomically (nothing on failure)."""
    atomic.write_bytes(output, unpack(source.read_bytes(), str(source)))


def pack_file(source: Path, output: Path) -> None:
    """Write the ``.pbmm`` of the frozen GraphDef ``source`` to ``output`` atomically."""
    atomic.write_bytes(output, pack(source.read_bytes(), str(source)))


def check_file(path: Path) -> None:
    """Refuse, on the host and before anything is copied, a file that is not a sound ``.pbmm``."""
    if not path.is_file():
        raise ModelFileError(f"The model file {path} does not exist; pass the path of a .pbmm.")
    unpack(path.read_bytes(), str(path))


def _bad_pbmm(data: bytes, source: str, reason: str) -> ModelFileError:
    """The error for a file without a sound directory: a plain .pb is named as such."""
    if is_graph_def(data):
        return ModelFileError(
            f"{source} is a plain frozen GraphDef (.pb), not a memory-mapped model (.pbmm) ({reason}). Pass a "
            f".pbmm (the release's deepspeech-*-models.pbmm or one ds2ir wrote), or use the .pb as a frozen graph; "
            f"nothing was written.")
    return _broken(source, reason)


def _broken(source: str, reason: str) -> ModelFileError:
    return ModelFileError(
        f"{source} is not a usable memory-mapped model (.pbmm): {reason}. Download or copy it again (a cut-off "
        f"transfer looks like this) or re-create it from its .pb (TensorFlow's convert_graphdef_memmapped_format, "
        f"or ds2ir's frozen/output_graph.pbmm); nothing was written.")
