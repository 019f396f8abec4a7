"""A small real language model for scorer tests: an ARPA file written here, KenLM's build_binary
compiled from the kenlm sdist on PyPI (its full C++ source builds without Boost), a binary LM.

Debian packages no KenLM, and DeepSpeech's released scorer lives on GitHub; this makes a
scorer's two ingredients from nothing but g++ and pip.
"""
from __future__ import annotations

import hashlib
import math
import sys
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

from ds2ir.runner import Runner

SDIST = "kenlm==0.3.0"
SDIST_FILE = "kenlm-0.3.0.tar.gz"
SDIST_SHA256 = "c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8"
DISCOUNT = 0.5
Ngram = Tuple[str, ...]


def build_binary(workdir: Path, runner: Runner) -> Path:
    """KenLM's build_binary, compiled from the verified sdist in ``workdir`` (~15 s on two cores)."""
    runner.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "kenlm", SDIST, "-d", workdir],
               step="download kenlm sdist", capture=True, quiet=True)
    archive = workdir / SDIST_FILE
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert digest == SDIST_SHA256, f"{archive} has sha256 {digest}, expected {SDIST_SHA256}"
    with tarfile.open(archive) as tar:  # trusted (the hash is pinned); the data filter where Python has it
        tar.extractall(workdir, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    source = workdir / SDIST_FILE[:-len(".tar.gz")]
    # What compile_query_only.sh compiles, minus tests and other mains, in one g++ call.
    files = sorted(str(p.relative_to(source)) for folder in ("util/double-conversion", "util", "lm")
                   for p in (source / folder).glob("*.cc") if not p.name.endswith(("test.cc", "main.cc")))
    binary = workdir / "build_binary"
    runner.run(["g++", "-I.", "-O1", "-DNDEBUG", "-DKENLM_MAX_ORDER=6", "-w", *files, "lm/build_binary_main.cc",
                "-o", binary, "-lrt"], step="compile build_binary", cwd=source, capture=True, quiet=True)
    return binary


def write_arpa(sentences: Iterable[str], path: Path, *, order: int = 3) -> Path:
    """An ARPA back-off model of the sentences: add-one unigrams (with ``<unk>``), absolute
    discounting above, back-off weights that make every distribution sum to one."""
    counts: Dict[int, Counter] = {n: Counter() for n in range(1, order + 1)}
    for sentence in sentences:
        tokens = ["<s>", *sentence.split(), "</s>"]
        for n in range(1, order + 1):
            counts[n].update(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    vocabulary = sorted({gram[0] for gram in counts[1]} - {"<s>"} | {"<unk>"})
    total = sum(counts[1][(word,)] for word in vocabulary)
    unigram = {word: (counts[1][(word,)] + 1) / (total + len(vocabulary)) for word in vocabulary}

    def full(gram: Ngram) -> float:
        """P(last word | context) of the back-off model."""
        if len(gram) == 1:
            return unigram.get(gram[0], unigram["<unk>"])
        if gram in probability:
            return probability[gram]
        return backoff.get(gram[:-1], 1.0) * full(gram[1:])

    probability: Dict[Ngram, float] = {}
    backoff: Dict[Ngram, float] = {}
    for n in range(2, order + 1):
        continuations: Dict[Ngram, List[Ngram]] = defaultdict(list)
        for gram in counts[n]:
            continuations[gram[:-1]].append(gram)
        for context, grams in continuations.items():
            seen = sum(counts[n][gram] for gram in grams)
            for gram in grams:
                probability[gram] = (counts[n][gram] - DISCOUNT) / seen
            left = 1 - sum(probability[gram] for gram in grams)
            lower = 1 - sum(full(gram[1:]) for gram in grams)
            backoff[context] = left / lower
    lines = ["\\data\\"] + [f"ngram {n}={len(counts[n]) + (1 if n == 1 else 0)}" for n in range(1, order + 1)]
    for n in range(1, order + 1):
        lines += ["", f"\\{n}-grams:"]
        grams: Sequence[Ngram] = sorted(counts[n]) if n > 1 else [("<s>",)] + [(word,) for word in vocabulary]
        for gram in grams:
            value = -99.0 if gram == ("<s>",) else math.log10(unigram[gram[0]] if n == 1 else probability[gram])
            line = f"{value:.6f}\t{' '.join(gram)}"
            if n < order and gram in backoff:
                line += f"\t{math.log10(backoff[gram]):.6f}"
            lines.append(line)
    path.write_text("\n".join(lines + ["", "\\end\\", ""]), encoding="utf-8")
    return path


def binary_lm(build_binary_path: Path, arpa: Path, output: Path, runner: Runner) -> Path:
    """The ARPA model as a KenLM trie binary without its vocabulary strings (-v), as DeepSpeech's
    generate_lm.py builds the LM of a scorer package."""
    runner.run([build_binary_path, "-v", "trie", arpa, output], step="build_binary", capture=True, quiet=True)
    return output
