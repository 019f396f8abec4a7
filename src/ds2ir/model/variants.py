"""A target's variants: the IRs one frozen graph (or its hoisted twin) is converted to, and their names.

A variant sets three target keys: ``lstm`` (a frozen graph of its own when hoisted), ``ir_precision``
and ``weight_compression``. Its name says which: ``hoisted-`` when the LSTM is hoisted, then the IR's
weights, fp32, fp16 or int8 (an FP32 IR whose weights NNCF compresses). docs/variants.md.
"""
from __future__ import annotations

import difflib
from typing import Any, Dict, Optional, Tuple

from ds2ir.errors import ConfigError

VARIANT_WEIGHTS = {"fp32": ("FP32", "none"), "fp16": ("FP16", "none"), "int8": ("FP32", "int8")}
HOISTED_PREFIX = "hoisted-"
VARIANT_NAMES = tuple(f"{prefix}{weights}" for prefix in ("", HOISTED_PREFIX) for weights in VARIANT_WEIGHTS)
#: what joins a target and one of its variants in one reference: ``synthetic-small@int8``
VARIANT_SEPARATOR = "@"
#: the variant targets ds2ir had before variants became an axis of a target: their suffix -> the variant now
OLD_VARIANT_SUFFIXES = {"fast": "hoisted-fp32", "fast-int8": "hoisted-int8", "int8": "int8", "fp16": "fp16"}


def variant_name(lstm: str, ir_precision: str, weight_compression: str) -> str:
    """The name of the variant these keys make (ir_precision FP16 with int8 weights has none: refused)."""
    weights = "int8" if weight_compression == "int8" else ir_precision.lower()
    return f"{HOISTED_PREFIX}{weights}" if lstm == "hoisted" else weights


def variant_keys(name: str) -> Dict[str, str]:
    """The target keys a variant name stands for (a name from VARIANT_NAMES)."""
    hoisted = name.startswith(HOISTED_PREFIX)
    ir_precision, weight_compression = VARIANT_WEIGHTS[name[len(HOISTED_PREFIX):] if hoisted else name]
    return {"lstm": "hoisted" if hoisted else "fused", "ir_precision": ir_precision, "weight_compression": weight_compression}


def listed_variants(listed: Any, *, default: str, fixed_graph: Optional[str], inherited: bool, source: str,
                    key: str) -> Tuple[str, ...]:
    """A target's ``variants`` (``key``) checked: its default variant first, then the others it lists.

    ``fixed_graph`` says whose graph the target converts when ds2ir's exporter does not write it (a
    .pbmm's, another exporter's), so it cannot be hoisted: an ``inherited`` list loses its hoisted
    variants, a list of the target's own naming one is refused."""
    if fixed_graph and inherited and isinstance(listed, list):
        listed = [name for name in listed if not str(name).startswith(HOISTED_PREFIX)]
    if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
        raise ConfigError(f"must be a list of variant names ({', '.join(VARIANT_NAMES)}), got {listed!r}",
                          file=source, key=key)
    for name in listed:
        if name not in VARIANT_NAMES:
            hint = difflib.get_close_matches(name, VARIANT_NAMES, n=1)
            raise ConfigError(f"unknown variant '{name}'.{f' Did you mean {hint[0]!r}?' if hint else ''} A variant "
                              f"is one of {', '.join(VARIANT_NAMES)} (docs/variants.md)", file=source, key=key)
        if listed.count(name) > 1:
            raise ConfigError(f"variant '{name}' is listed twice", file=source, key=key)
        if name.startswith(HOISTED_PREFIX) and fixed_graph:
            raise ConfigError(f"variant '{name}' hoists the LSTM, a graph of ds2ir's own exporter, but the target's "
                              f"graph is {fixed_graph}; list only fp16 or int8 variants for it", file=source, key=key)
    return (default,) + tuple(name for name in listed if name != default)


def old_variant_hint(name: str, targets: Any) -> str:
    """For a variant target of before (``synthetic-small-int8``): what names it now; else nothing."""
    for base in targets:
        variant = OLD_VARIANT_SUFFIXES.get(name[len(base) + 1:]) if name.startswith(base + "-") else None
        if variant:
            return (f" Variants are an axis of a target now (docs/variants.md): use '--target {base} --variant "
                    f"{variant}', or '{base}{VARIANT_SEPARATOR}{variant}' where one name is needed (matrix cells).")
    return ""
