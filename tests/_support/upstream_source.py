"""A stand-in for DeepSpeech's v0.8.2 source archive, laid out as GitHub serves it.

GitHub cannot be reached where the tests run, so this archive tests the plumbing of
exporter "deepspeech": fetch and verify, the image build that installs it with
``pip install -c CONSTRAINTS -e .``, running ``DeepSpeech.py`` from the source directory
with the target's flags, and publishing ``output_graph.pb``. Its exporter takes the flags
ds2ir passes (unknown ones fail, as absl's do), needs ``data/alphabet.txt`` relative to
the working directory (DeepSpeech's default), writes a real frozen graph with ds2ir's
own freeze code inside the image, and records its working directory, argv and where
its package was imported from in ``<artifacts>/upstream-invocation.json`` for the test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ds2ir.model.architecture import Alphabet
from tests._support.tarballs import make_tar

ROOT = "DeepSpeech-0.8.2"
RECORD = "upstream-invocation.json"

SETUP_PY = '''\
from setuptools import find_packages, setup

# Requirements the freeze-tf1.15.2 lock already holds, so the test image installs nothing new.
setup(
    name="deepspeech_training",
    version=open("VERSION").read().strip(),
    package_dir={"": "training"},
    packages=find_packages(where="training"),
    install_requires=["tensorflow == 1.15.2", "numpy", "protobuf"],
)
'''

DEEPSPEECH_PY = '''\
#!/usr/bin/env python
from deepspeech_training import train

if __name__ == "__main__":
    train.run_script()
'''

TRAIN_PY = '''\
"""Export only: the flags ds2ir passes, a real frozen graph, a record of the call."""
import argparse
import json
import os
import sys
from pathlib import Path

INTEGER_FLAGS = ("n_hidden", "n_steps", "audio_sample_rate", "feature_win_len", "feature_win_step", "export_beam_width")


def run_script():
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint_dir", required=True)
    parser.add_argument("--export_dir", required=True)
    parser.add_argument("--alphabet_config_path", default="data/alphabet.txt")
    parser.add_argument("--scorer_path", default="data/lm/kenlm.scorer")
    parser.add_argument("--relu_clip", type=float, default=20.0)
    for name in INTEGER_FLAGS:
        parser.add_argument("--" + name, type=int)
    flags = parser.parse_args()
    if flags.scorer_path:
        sys.exit("export loads no scorer: pass --scorer_path ''")
    if not Path("data/alphabet.txt").is_file():
        sys.exit("data/alphabet.txt is not in the working directory " + os.getcwd())

    from ds2ir.model.architecture import Alphabet, Architecture
    from ds2ir.stages.freeze.freeze import freeze

    arch = Architecture(n_hidden=flags.n_hidden, n_steps=flags.n_steps, relu_clip=flags.relu_clip,
                        sample_rate=flags.audio_sample_rate, feature_win_len_ms=flags.feature_win_len,
                        feature_win_step_ms=flags.feature_win_step, beam_width=flags.export_beam_width)
    export_dir = Path(flags.export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = Path(flags.checkpoint_dir)
    freeze(checkpoint_dir, export_dir / "output_graph.pb", arch, Alphabet.load(Path(flags.alphabet_config_path)))
    record = {"cwd": os.getcwd(), "argv": sys.argv, "package": str(Path(__file__).resolve().parent)}
    (checkpoint_dir.resolve().parents[1] / "%s").write_text(json.dumps(record))
''' % RECORD


def upstream_source_archive(path: Path, *, omit: Sequence[str] = ()) -> Path:
    """Write the archive (byte-for-byte reproducible); ``omit`` leaves out files by their path under the root."""
    files = {
        "setup.py": SETUP_PY.encode(),
        "VERSION": b"0.8.2\n",
        "DeepSpeech.py": DEEPSPEECH_PY.encode(),
        "data/alphabet.txt": Alphabet.default().to_text().encode(),
        "training/deepspeech_training/__init__.py": b"",
        "training/deepspeech_training/train.py": TRAIN_PY.encode(),
    }
    directories = sorted({f"{ROOT}/{'/'.join(name.split('/')[:depth])}/"
                          for name in files for depth in range(1, name.count("/") + 1)})
    members = [(f"{ROOT}/", "dir", None)] + [(name, "dir", None) for name in directories]
    members += [(f"{ROOT}/{name}", "file", data) for name, data in sorted(files.items()) if name not in omit]
    return make_tar(path, members)
