"""DeepSpeech external scorers: package, check and load them.

A scorer package (DeepSpeech 0.7 to 0.9, ``generate_scorer_package``) is a KenLM binary
language model (built with ``build_binary -v``: no vocabulary strings) with the decoder's
vocabulary appended at the model's end: a header (int32 magic ``'TRIE'``, int32 format
version 6, a UTF-8-mode byte, the default alpha and beta as doubles) and an OpenFST
``ConstFst`` acceptor, written aligned, that spells every word in the alphabet's labels
(label ``i`` as ``i + 1``, 0 being epsilon) followed by the space label.

ds_ctcdecoder's Python module loads packages but cannot fill the vocabulary (its
``fill_dictionary`` takes a C++ ``unordered_set`` SWIG does not convert, in 0.8.2 and
0.9.3 alike), so the package is written here, in plain Python, as a trie: deterministic
and label-sorted, which is all the decoder's sorted matcher needs. :func:`inspect` checks
a file the same way before ds_ctcdecoder maps it: the decoder memory-maps the trie and
would crash (SIGBUS) on a truncated one instead of failing.
"""
from __future__ import annotations

import math
import mmap
import os
import stat
import struct
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from ds2ir import atomic
from ds2ir.errors import CommandError, ConfigError, DecoderError, MissingInputError
from ds2ir.model.architecture import Alphabet
from ds2ir.paths import regular_file
from ds2ir.runner import Runner

__all__ = ["RELEASE_ALPHA", "RELEASE_BETA", "ScorerInfo", "check_output", "ctcdecoder", "inspect", "load", "native_alphabet", "package",
           "read_vocabulary", "write_package"]

#: The default alpha and beta DeepSpeech's docs give for the released 0.7-0.9 English scorers.
RELEASE_ALPHA = 0.931289039105002
RELEASE_BETA = 1.1834137581510284

KENLM_MAGIC = b"mmap lm http://kheafield.com/code format version 5\n\0"
KENLM_INCOMPLETE = b"mmap lm http://kheafield.com/code incomplete\n"
# The C++ multi-character constant 'TRIE', written as a little-endian int32.
TRIE_MAGIC = struct.pack("<i", (ord("T") << 24) | (ord("R") << 16) | (ord("I") << 8) | ord("E"))
TRIE_VERSION = 6
_TRIE_HEADER = struct.Struct("<4si?dd")  # magic, version, utf8 mode, alpha, beta
_FST_MAGIC = 2125659606
_FST_TYPE, _ARC_TYPE = b"const", b"standard"
_FST_ALIGNED_VERSION = 1  # ConstFst's aligned file format, what save_dictionary writes
_FST_IS_ALIGNED = 4
_FST_ALIGN = 16
_FST_TAIL = struct.Struct("<iiQqqq")  # version, flags, properties, start, states, arcs
_STATE = struct.Struct("<fIIII")  # final weight, first arc, arcs, input epsilons, output epsilons
_ARC = struct.Struct("<iifi")  # input label, output label, weight, next state
_ZERO, _ONE = float("inf"), 0.0  # the tropical semiring's Zero and One
# What a trie of words is, as OpenFST property bits: expanded, acceptor, deterministic both
# ways, no epsilons, label-sorted, unweighted, acyclic, initial-acyclic, topologically sorted,
# accessible and co-accessible.
_TRIE_PROPERTIES = (0x1 | 0x10000 | 0x40000 | 0x100000 | 0x800000 | 0x2000000 | 0x8000000 | 0x10000000 | 0x40000000
                    | 0x200000000 | 0x800000000 | 0x2000000000 | 0x4000000000 | 0x10000000000 | 0x40000000000)


def _fst_prefix() -> bytes:
    """The bytes every ConstFst of standard arcs starts with: magic, type and arc type."""
    return (struct.pack("<i", _FST_MAGIC) + struct.pack("<i", len(_FST_TYPE)) + _FST_TYPE
            + struct.pack("<i", len(_ARC_TYPE)) + _ARC_TYPE)


class ScorerInfo(NamedTuple):
    """What a scorer package holds, read from its header."""

    path: str
    lm_bytes: int
    alpha: float
    beta: float
    utf8: bool
    states: int
    arcs: int


def read_vocabulary(path: Path) -> List[str]:
    """The words of a vocabulary file (separated by any whitespace), unique, in first-seen order."""
    regular_file(path, "vocabulary file", error=DecoderError)  # a FIFO would block the read forever
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise MissingInputError(f"The vocabulary file {path} does not exist.") from exc
    except UnicodeDecodeError as exc:
        raise DecoderError(f"The vocabulary file {path} is not UTF-8 text; give words separated by whitespace.") from exc
    return list(dict.fromkeys(text.split()))


def _spell(words: Iterable[str], alphabet: Alphabet) -> Tuple[List[Tuple[int, ...]], List[str]]:
    """Each word as FST labels (alphabet index + 1, then the space label); words the alphabet cannot spell apart."""
    index = {label: i + 1 for i, label in enumerate(alphabet.labels)}
    if " " not in index:
        raise DecoderError("The alphabet has no space label, so a word-level scorer cannot mark word ends.")
    spelled, skipped = [], []
    for word in words:
        if word in ("<s>", "</s>", "<unk>"):
            continue
        if all(char in index for char in word):
            spelled.append(tuple(index[char] for char in word) + (index[" "],))
        else:
            skipped.append(word)
    return spelled, skipped


def _trie(spelled: Sequence[Tuple[int, ...]]) -> Tuple[List[List[Tuple[int, int]]], List[bool]]:
    """A deterministic, label-sorted trie of the label sequences: arcs per state and final flags.

    States are numbered as they are created while walking the sorted words, so every arc
    leads to a higher state and each state's arcs come out in label order.
    """
    arcs: List[List[Tuple[int, int]]] = [[]]
    final = [False]
    path = [0]  # the states along the previous word
    previous: Tuple[int, ...] = ()
    for labels in sorted(set(spelled)):
        shared = 0
        while shared < min(len(labels), len(previous)) and labels[shared] == previous[shared]:
            shared += 1
        del path[shared + 1:]
        for label in labels[shared:]:
            arcs.append([])
            final.append(False)
            arcs[path[-1]].append((label, len(arcs) - 1))
            path.append(len(arcs) - 1)
        final[path[-1]] = True
        previous = labels
    return arcs, final


def _padding(offset: int) -> bytes:
    return b"\0" * (-offset % _FST_ALIGN)


def _fst_bytes(arcs: List[List[Tuple[int, int]]], final: List[bool], offset: int) -> bytes:
    """The trie as an aligned ConstFst starting at file ``offset`` (alignment is to file offsets)."""
    n_arcs = sum(len(out) for out in arcs)
    out = bytearray(_fst_prefix() + _FST_TAIL.pack(_FST_ALIGNED_VERSION, _FST_IS_ALIGNED, _TRIE_PROPERTIES,
                                                   0, len(arcs), n_arcs))
    out += _padding(offset + len(out))
    position = 0
    for state, leaving in enumerate(arcs):
        out += _STATE.pack(_ONE if final[state] else _ZERO, position, len(leaving), 0, 0)
        position += len(leaving)
    out += _padding(offset + len(out))
    for leaving in arcs:
        for label, target in leaving:
            out += _ARC.pack(label, label, _ONE, target)
    return bytes(out)


def write_package(lm: Path, words: Iterable[str], alphabet: Alphabet, output: Path, *,
                  alpha: float = RELEASE_ALPHA, beta: float = RELEASE_BETA) -> Tuple[ScorerInfo, List[str]]:
    """Write ``lm`` with the vocabulary trie appended to ``output`` (atomically); return its info and
    the words left out because the alphabet cannot spell them."""
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value):
            raise ConfigError(f"the scorer's default {name} must be a finite number, got {value} (--default-{name})")
    regular_file(lm, "KenLM binary", error=DecoderError)
    check_output(output, lm)
    model = lm.read_bytes()
    if not model.startswith(KENLM_MAGIC):
        raise DecoderError(f"{lm} is not a KenLM binary language model (no KenLM header); make one from an ARPA "
                           f"file with KenLM's 'build_binary -v trie LM.arpa LM.binary'.")
    if _find_trie(model) is not None:
        raise DecoderError(f"{lm} already carries a vocabulary trie: it is a scorer package, not a bare KenLM binary.")
    if b"\0<s>\0" in model and b"\0</s>\0" in model:  # KenLM appends the words' strings unless built with -v
        raise DecoderError(f"{lm} holds its vocabulary's strings where the decoder looks for the trie; rebuild it "
                           f"with 'build_binary -v trie LM.arpa LM.binary'.")
    spelled, skipped = _spell(words, alphabet)
    if not spelled:
        raise DecoderError(f"None of the vocabulary's words can be spelled in the alphabet ({len(skipped)} words); "
                           f"a scorer needs at least one.")
    arcs, final = _trie(spelled)
    header = _TRIE_HEADER.pack(TRIE_MAGIC, TRIE_VERSION, False, alpha, beta)
    data = model + header + _fst_bytes(arcs, final, len(model) + len(header))
    atomic.write_bytes(output, data)
    return _parse(data, str(output)), skipped


def package(lm: Path, vocabulary: Path, alphabet: Alphabet, output: Path, *, alpha: float = RELEASE_ALPHA,
            beta: float = RELEASE_BETA) -> Dict[str, Any]:
    """`package-scorer`: a vocabulary file's words and a KenLM binary into ``output``; a summary to print."""
    check_output(output, vocabulary)
    words = read_vocabulary(vocabulary)
    info, skipped = write_package(lm, words, alphabet, output, alpha=alpha, beta=beta)
    return {**info._asdict(), "words": len(words) - len(skipped), "skipped": skipped[:20]}


def check_output(output: Path, *inputs: Path) -> None:
    """Refuse an ``output`` that is not a regular file, or that is (or links to) one of ``inputs``:
    writing it would replace an input or fail half way."""
    try:
        info = output.stat()
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        raise DecoderError(f"The output {output} exists and is not a regular file (a directory, FIFO or device); "
                           f"give the path of the .scorer file to write.")
    for source in inputs:
        if os.path.abspath(str(output)) == os.path.abspath(str(source)) or (info is not None and source.exists()
                                                                             and os.path.samefile(output, source)):
            raise ConfigError(f"the output {output} is the input {source}; writing it would replace that input. "
                              f"Give another --output.")


def _find_trie(data: Union[bytes, mmap.mmap]) -> Optional[int]:
    """Offset of the last trie header whose FST follows it, or None."""
    prefix = _fst_prefix()
    end = len(data)
    while True:
        at = data.rfind(prefix, 0, end)
        if at < 0:
            return None
        start = at - _TRIE_HEADER.size
        if start >= len(KENLM_MAGIC) and data[start:start + 4] == TRIE_MAGIC:
            return start
        end = at


def _parse(data: Union[bytes, mmap.mmap], path: str) -> ScorerInfo:
    """Check a whole package in memory (bytes or mmap); raise DecoderError naming what is wrong."""
    size = len(data)
    if data[:len(KENLM_INCOMPLETE)] == KENLM_INCOMPLETE:
        raise DecoderError(f"The scorer {path} is an incomplete KenLM binary (its build_binary run did not finish); "
                           f"rebuild it.")
    if data[:len(KENLM_MAGIC)] != KENLM_MAGIC:
        raise DecoderError(f"{path} is not a DeepSpeech scorer: it does not start with a KenLM binary language model. "
                           f"Give a .scorer package (e.g. deepspeech-0.8.2-models.scorer) or make one with "
                           f"'invoke package-scorer'.")
    start = _find_trie(data)
    if start is None:
        raise DecoderError(f"The scorer {path} ({size} bytes) has no vocabulary trie at its end: it is truncated, or a "
                           f"bare KenLM binary. Download it again, or package a KenLM binary with 'invoke package-scorer'.")
    _, version, utf8, alpha, beta = _TRIE_HEADER.unpack_from(data, start)
    if version != TRIE_VERSION:
        raise DecoderError(f"The scorer {path} has trie format version {version}; DeepSpeech 0.7 to 0.9 (and "
                           f"ds_ctcdecoder 0.9.3) read version {TRIE_VERSION}. Use a scorer made for DeepSpeech 0.8.2.")
    tail = start + _TRIE_HEADER.size + len(_fst_prefix())
    if tail + _FST_TAIL.size > size:
        raise DecoderError(f"The scorer {path} is truncated inside its vocabulary trie's header; download it again.")
    fst_version, flags, _, start_state, states, arcs = _FST_TAIL.unpack_from(data, tail)
    if states < 1 or arcs < 0 or not 0 <= start_state < states:
        raise DecoderError(f"The scorer {path} is damaged: its vocabulary trie declares {states} states, {arcs} arcs and "
                           f"start state {start_state} (a trie has at least one state, no negative count, and starts at "
                           f"one of its states). Download or package it again.")
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise DecoderError(f"The scorer {path} is damaged: its default alpha and beta are {alpha} and {beta}, not finite "
                           f"numbers. Package it again with 'invoke package-scorer'.")
    end = tail + _FST_TAIL.size
    aligned = fst_version == _FST_ALIGNED_VERSION or flags & _FST_IS_ALIGNED
    end += (-end % _FST_ALIGN if aligned else 0) + states * _STATE.size
    end += (-end % _FST_ALIGN if aligned else 0) + arcs * _ARC.size
    if end > size:
        raise DecoderError(f"The scorer {path} is truncated: its vocabulary trie ends at byte {end}, but the file has "
                           f"{size} bytes. Download or package it again.")
    return ScorerInfo(path=path, lm_bytes=start, alpha=alpha, beta=beta, utf8=bool(utf8), states=states, arcs=arcs)


def inspect(path: Path) -> ScorerInfo:
    """Check that ``path`` is a complete DeepSpeech scorer package; return what its header says."""
    regular_file(path, "scorer", error=DecoderError)
    with open(path, "rb") as handle:
        if path.stat().st_size == 0:
            return _parse(b"", str(path))
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(data, str(path))


def native_alphabet(alphabet: Alphabet) -> Any:  # ds_ctcdecoder's Alphabet (SWIG, untyped)
    """The alphabet as ds_ctcdecoder's (from DeepSpeech's serialized form, no file needed)."""
    native = ctcdecoder().swigwrapper.Alphabet()  # the SWIG class: the wrapper's constructor wants a file
    serialized = alphabet.serialize()
    if native.Deserialize(serialized, len(serialized)) != 0:
        raise DecoderError("ds_ctcdecoder cannot read the model's alphabet.")
    return native


def ctcdecoder() -> Any:  # the module (untyped)
    """The ds_ctcdecoder module, or a DecoderError saying which image has it."""
    try:
        import ds_ctcdecoder
    except ImportError as exc:
        raise DecoderError(
            "Beam search needs ds_ctcdecoder (DeepSpeech's CTC decoder), which this image lacks. Point the target's "
            "app_image in targets.toml at an image that installs it (app-ov2025.3), or transcribe greedily "
            "(no --scorer, no --beam-width)."
        ) from exc
    return ds_ctcdecoder


# The decoder's error codes for scorers (native_client/deepspeech_errors), as users read them.
_LOAD_ERRORS = {
    0x2005: "cannot be read",
    0x2006: "is not a valid KenLM language model",
    0x2007: "has no vocabulary trie",
    0x2008: "has an invalid vocabulary trie (or a KenLM binary built without build_binary -v)",
    0x2009: "has a trie of another format version",
}


def _probe(path: Path) -> None:
    """Load the scorer once in a child process: ds_ctcdecoder lets KenLM's exceptions escape, so a
    damaged language model aborts the process that loads it instead of failing."""
    code = ("import sys\nfrom pathlib import Path\nfrom ds2ir import errors\nfrom ds2ir.model import scorer\nfrom ds2ir.model.architecture import Alphabet\n"
            "try:\n    scorer._load(Path(sys.argv[1]), Alphabet.default())\n"
            "except errors.DecoderError:\n    pass  # a clean failure: the caller's own load reports it\n")
    try:
        Runner(echo_output=False).run([sys.executable, "-c", code, str(path)], step="load scorer", capture=True, quiet=True)
    except CommandError as exc:
        lines = [line.strip() for line in exc.log_tail.splitlines() if line.strip()]
        raise DecoderError(f"The scorer {path} has a damaged KenLM language model: loading it aborts ds_ctcdecoder "
                           f"({lines[-1] if lines else f'exit code {exc.exit_code}'}). Download or package it again.") from exc


def load(path: Path, alphabet: Alphabet, *, alpha: Optional[float] = None, beta: Optional[float] = None) -> Any:
    """The scorer as ds_ctcdecoder's, checked first; ``alpha``/``beta`` override the package's defaults."""
    inspect(path)
    ctcdecoder()
    _probe(path)
    scorer = _load(path, alphabet)
    if alpha is not None and beta is not None:
        scorer.reset_params(alpha, beta)
    return scorer


def _load(path: Path, alphabet: Alphabet) -> Any:  # ds_ctcdecoder's Scorer (SWIG, untyped)
    """ds_ctcdecoder's Scorer.init, its error code as a DecoderError."""
    decoder = ctcdecoder()
    scorer = decoder.Scorer()
    code = scorer.init(str(path).encode("utf-8"), native_alphabet(alphabet))
    if code != 0:
        reason = _LOAD_ERRORS.get(code, f"fails to load (error 0x{code:X})")
        raise DecoderError(f"The scorer {path} {reason} according to ds_ctcdecoder {decoder.__version__}; "
                           f"use a scorer made for DeepSpeech 0.8.2 or package one with 'invoke package-scorer'.")
    return scorer
