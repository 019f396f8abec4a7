"""The memory-mapped graph every build writes (frozen/output_graph.pbmm), loaded by DeepSpeech's native client."""
from __future__ import annotations

import shutil

from tests.e2e.helpers import PROJECT, last_json, stage_command

SENTENCE = "she had your dark suit in greasy wash water all year"


def test_native_client_transcribes_our_pbmm_as_our_pb_and_its_constants_are_the_pbs(smoke_build, docker):
    """deepspeech 0.9.3 (its own TensorFlow 2.3) maps our .pbmm and reads the sentence the trained model
    reads from the .pb; unpacked, the .pbmm gives back the .pb's GraphDef with every constant bit for bit."""
    shutil.copy(str(PROJECT / "data" / "LDC93S1.wav"), str(smoke_build / "LDC93S1.wav"))
    output = stage_command(docker, "ldc93s1-smoke", "freeze", ["check-pbmm", "--audio", "/artifacts/LDC93S1.wav"],
                           smoke_build)
    result = last_json(output)
    assert result["native_client"] == "0.9.3" and result["memory_mapped"] >= 6
    assert result["differing_constants"] == [] and result["graph_def_identical"] is True
    assert result["transcripts"] == {"pb": SENTENCE, "pbmm": SENTENCE}
