"""Which CPU a build ran on, and which instruction set each engine used on it.

Float32 results depend on the kernels an engine picks for the CPU (docs/fidelity.md), so the manifest,
the check report and benchmark reports say which CPU they come from. Linux only (``/proc/cpuinfo``);
importable on Python 3.7 (the freeze image reports its engines too).
"""
from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path
from typing import Dict, List, Optional, Set

#: the vector extensions that decide kernels, in the order of their width (cpuinfo flag names)
VECTOR_EXTENSIONS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                     "amx_bf16", "amx_int8")
CPUINFO = Path("/proc/cpuinfo")


def describe(cpuinfo: Path = CPUINFO) -> Dict[str, object]:
    """The CPU's model name, logical CPUs and the VECTOR_EXTENSIONS it has (empty when unknown)."""
    model, count = "unknown", 0
    flags: Set[str] = set()
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            count += 1
        elif key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"model": model, "logical_cpus": count, "vector_extensions": [name for name in VECTOR_EXTENSIONS if name in flags]}


def tensorflow_gemm_isa(extensions: List[str]) -> str:
    """The kernel TF 1.15's MatMul and BlockLSTM get: its bundled mkl-dnn (v0.x) sgemm dispatches by CPUID,
    and has no switch to limit it, so this follows from the CPU's extensions."""
    for flag, kernel in (("avx512f", "avx512_common"), ("avx2", "avx2"), ("avx", "avx")):
        if flag in extensions:
            return f"mkl-dnn sgemm jit_{kernel}"
    return "mkl-dnn sgemm reference"


def openblas_core() -> Optional[str]:
    """The core OpenBLAS (numpy's BLAS) chose, e.g. 'Haswell' or what OPENBLAS_CORETYPE forced; None if not found."""
    import numpy

    base = os.path.dirname(numpy.__file__)
    for library in sorted(glob.glob(os.path.join(base, ".libs", "libopenblas*")) +
                          glob.glob(os.path.join(base, "..", "numpy.libs", "libopenblas*"))):
        handle = ctypes.CDLL(library)
        for symbol in ("openblas_get_corename", "openblas_get_corename64_", "scipy_openblas_get_corename"):
            if hasattr(handle, symbol):
                function = getattr(handle, symbol)
                function.restype = ctypes.c_char_p
                return str(function().decode())
    return None
