"""TensorFlow's memory-mapped model format (``.pbmm``), read and written in plain Python.

A ``.pbmm`` (TensorFlow's ``MemmappedFileSystemDirectory``, the file DeepSpeech's native
client loads) is a row of byte regions, then a directory (a ``MemmappedFileSystemDirectory``
protobuf: per region its offset, ``memmapped_package://`` name and length), then the
directory's offset as 8 little-endian bytes. The region ``memmapped_package://.`` holds a
GraphDef whose large constants are ``ImmutableConst`` nodes (attributes ``dtype``, ``shape``,
``memory_region_name``) pointing at tensor regions, each aligned so that TensorFlow can map
it straight into a tensor.

Only the few protobuf fields the format needs are decoded (wire format by hand, model/graphdef.py),
so the same code runs on the host (to refuse a bad file before anything is copied), in the
freeze image (Python 3.7) and in unit tests, and every other byte of the GraphDef is kept
as it was. :func:`unpack` turns each ``ImmutableConst`` back into a ``Const`` holding its
region's bytes; :func:`pack` does the reverse, deterministically.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence, Set, Tuple, Union

from ds2ir import atomic
from ds2ir.errors import ModelFileError
from ds2ir.model.graphdef import (
    ATTR_S,
    ATTR_SHAPE,
    ATTR_TENSOR,
    ATTR_TYPE,
    BYTES,
    DTYPE_SIZES,
    GRAPH_NODE,
    TENSOR_CONTENT,
    TENSOR_DTYPE,
    TENSOR_SHAPE,
    VARINT,
    Malformed,
    Node,
    byte_size,
    bytes_field,
    constants,
    read_fields,
    shape_dims,
    text,
    varint_field,
)

PREFIX = "memmapped_package://"
GRAPH_REGION = PREFIX + "."
#: TensorFlow's Allocator::kAllocatorAlignment: ImmutableConst refuses a region not aligned to it
TF_ALIGNMENT = 64
#: what ds2ir writes: a multiple of TensorFlow's alignment (and of a disk sector)
ALIGNMENT = 512
#: convert_graphdef_memmapped_format's default --min_conversion_tensor_size: smaller constants stay Const
MIN_CONVERSION_BYTES = 10000

# field numbers of memmapped_file_system.proto
_ELEMENT_OFFSET, _ELEMENT_NAME, _ELEMENT_LENGTH, _DIRECTORY_ELEMENT = 1, 2, 3, 1


class Region(NamedTuple):
    offset: int
    length: int
    exact: bool  # the directory gave the length; else it is the span up to the next region (older writers)


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
        elements = [_element(field.value) for field in read_fields(memoryview(data)[directory_offset:size - 8])
                    if field.number == _DIRECTORY_ELEMENT and field.wire == BYTES]
    except Malformed as exc:
        raise _bad_pbmm(data, source, f"its directory at offset {directory_offset} cannot be parsed ({exc})") from exc
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
        raise Malformed("a directory element is a number")
    name, offset, length = "", 0, 0
    for field in read_fields(data):
        if field.number == _ELEMENT_NAME:
            name = text(field.value)
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
    kinds = {1: BYTES, 2: BYTES, 3: VARINT, 4: BYTES}  # node, library, version, versions
    try:
        fields = list(read_fields(data))
    except Malformed:
        return False
    return bool(fields) and fields[0].number == GRAPH_NODE and all(kinds.get(f.number) == f.wire for f in fields)


# -- unpack: ImmutableConst -> Const ---------------------------------------------------------

def unpack(data: bytes, source: str) -> bytes:
    """The GraphDef of a ``.pbmm`` with every ``ImmutableConst`` turned into a ``Const`` of its region's bytes."""
    regions = read_directory(data, source)
    view = memoryview(data)
    graph = regions[GRAPH_REGION]
    out = bytearray()
    try:
        for field in read_fields(view[graph.offset:graph.offset + graph.length]):
            if field.number == GRAPH_NODE and field.wire == BYTES and isinstance(field.value, memoryview):
                out += bytes_field(GRAPH_NODE, _to_const(Node.parse(field.value), regions, view, source))
            else:
                out += field.raw
    except Malformed as exc:
        raise _broken(source, f"its graph region is not a GraphDef ({exc})") from exc
    return bytes(out)


def _to_const(node: Node, regions: Dict[str, Region], view: memoryview, source: str) -> bytes:
    if node.op != "ImmutableConst":
        return node.serialize(node.op, {key: bytes(value) for key, value in node.attrs.items()})
    dtype, shape, region_name = (node.attr("dtype", ATTR_TYPE), node.attr("shape", ATTR_SHAPE),
                                 node.attr("memory_region_name", ATTR_S))
    if not isinstance(dtype, int) or not isinstance(shape, memoryview) or not isinstance(region_name, memoryview):
        raise _broken(source, f"ImmutableConst '{node.name}' lacks its dtype, shape or memory_region_name")
    name = text(region_name)
    dims = shape_dims(shape)
    if dtype not in DTYPE_SIZES or dims is None:
        raise _broken(source, f"ImmutableConst '{node.name}' has DataType {dtype} and shape {dims}, "
                                      f"which no memory region can hold")
    if name not in regions:
        raise _broken(source, f"ImmutableConst '{node.name}' points at region '{name}', which the "
                                      f"directory does not list")
    region = regions[name]
    wanted = byte_size(dtype, dims)
    if (wanted != region.length) if region.exact else not (wanted <= region.length < wanted + ALIGNMENT):
        raise _broken(source, f"ImmutableConst '{node.name}' (DataType {dtype}, shape {dims}: {wanted} "
                                      f"bytes) points at region '{name}' of {region.length} bytes")
    if region.offset % TF_ALIGNMENT:
        raise _broken(source, f"region '{name}' of ImmutableConst '{node.name}' starts at offset "
                                      f"{region.offset}, not a multiple of {TF_ALIGNMENT} as TensorFlow requires")
    content = bytes(view[region.offset:region.offset + wanted])
    tensor = (varint_field(TENSOR_DTYPE, dtype) + bytes_field(TENSOR_SHAPE, bytes(shape))
              + bytes_field(TENSOR_CONTENT, content))
    return node.serialize("Const", {"dtype": varint_field(ATTR_TYPE, dtype), "value": bytes_field(ATTR_TENSOR, tensor)})


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
    used: Set[str] = set()
    try:
        for field in read_fields(graph_def):
            if field.number != GRAPH_NODE or not isinstance(field.value, memoryview):
                graph += field.raw
                continue
            node = Node.parse(field.value)
            content = _const_content(node, min_bytes)
            if content is None:
                graph += field.raw
                continue
            region = _region_name(node.name, used)
            out += bytes(-len(out) % ALIGNMENT)
            directory += _element_bytes(region, len(out), len(content))
            out += content
            value = node.attr("value", ATTR_TENSOR)
            assert isinstance(value, memoryview)
            tensor = {f.number: f.value for f in read_fields(value)}
            dtype, shape = tensor[TENSOR_DTYPE], tensor.get(TENSOR_SHAPE, memoryview(b""))
            assert isinstance(dtype, int) and isinstance(shape, memoryview)  # _const_content checked both
            graph += bytes_field(GRAPH_NODE, node.serialize("ImmutableConst", {
                "dtype": varint_field(ATTR_TYPE, dtype),
                "shape": bytes_field(ATTR_SHAPE, bytes(shape)),
                "memory_region_name": bytes_field(ATTR_S, region.encode()),
            }))
    except Malformed as exc:
        raise ModelFileError(f"{source} is not a frozen GraphDef (.pb): {exc}. Export the model again; "
                             f"nothing was written.") from exc
    directory += _element_bytes(GRAPH_REGION, len(out), len(graph))
    out += graph
    directory_offset = len(out)
    return bytes(out + directory + struct.pack("<Q", directory_offset))


def _const_content(node: Node, min_bytes: int) -> Optional[bytes]:
    """The bytes of a Const worth its own region: plain data, held as tensor_content, of known shape."""
    if node.op != "Const":
        return None
    tensor = node.attr("value", ATTR_TENSOR)
    if not isinstance(tensor, memoryview):
        return None
    fields = {f.number: f.value for f in read_fields(tensor)}
    dtype, shape, content = fields.get(TENSOR_DTYPE), fields.get(TENSOR_SHAPE), fields.get(TENSOR_CONTENT)
    if not isinstance(dtype, int) or dtype not in DTYPE_SIZES or not isinstance(content, memoryview):
        return None
    dims = shape_dims(shape) if isinstance(shape, memoryview) else []
    if dims is None or len(content) < min_bytes or len(content) != byte_size(dtype, dims):
        return None
    if set(fields) - {TENSOR_DTYPE, TENSOR_SHAPE, TENSOR_CONTENT, 3}:  # 3: version_number
        return None
    return bytes(content)


def _region_name(node_name: str, used: Set[str]) -> str:
    """memmapped_package:// + the node name with characters outside [A-Za-z0-9_.] as '_', made unique."""
    name = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else "_" for c in node_name)
    while name in used:
        name += "_"
    used.add(name)
    return PREFIX + name


def _element_bytes(name: str, offset: int, length: int) -> bytes:
    element = varint_field(_ELEMENT_OFFSET, offset) + bytes_field(_ELEMENT_NAME, name.encode())
    return bytes_field(_DIRECTORY_ELEMENT, element + varint_field(_ELEMENT_LENGTH, length))


# -- agreement: the same weights in two graphs ---------------------------------------------

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
