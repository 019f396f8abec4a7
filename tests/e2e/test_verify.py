"""`invoke verify` and `invoke transcribe` on real speech through the real containers."""
from __future__ import annotations

import json

import pytest

from ds2ir.model.layout import ArtifactLayout
from tests._support.checkout import DATA
from tests.e2e.helpers import invoke

RECORDINGS = ["LDC93S1.wav", "LDC93S1_pcms16le_1_8000.wav", "LDC93S1_pcms16le_2_44100.wav"]


@pytest.fixture(scope="module")
def verified(full_build):
    if not all((DATA / name).is_file() for name in RECORDINGS):
        pytest.fail(f"the recordings shipped in data/ are missing from {DATA}")
    result = invoke("verify", "--target", "synthetic-0.8.2", "--artifacts", str(full_build["artifacts"]))
    layout = ArtifactLayout(full_build["artifacts"], "synthetic-0.8.2")
    return json.loads((layout.verify_dir / "report.json").read_text()), layout, result.stdout


def test_ir_matches_tf_on_every_window_of_real_speech(verified):
    report, _, output = verified
    assert report["passed"] is True and report["inference_precision"] == "f32"
    assert sorted(entry["source"].rsplit("/", 1)[1] for entry in report["files"].values()) == sorted(RECORDINGS)
    for name, entry in report["files"].items():
        assert entry["windows"] == 10, name  # 2.9 s of speech: 145 frames in 16-step windows
        outputs = entry["outputs"]
        for output_name in ("logits", "state_c", "state_h"):
            assert len(outputs[output_name]["per_window_max_abs"]) == entry["windows"]
        # Every window within the float64 gate; TF's own float32 error shows the float64 model is the graph.
        for output_name, gate in entry["fidelity"]["outputs"].items():
            assert gate["worst_ratio"] <= 1 and 0 < gate["tf_vs_f64"] < 1e-4, (name, output_name, gate)
            assert len(gate["per_window_ir_vs_f64"]) == entry["windows"]
        assert entry["features_max_abs_vs_tf_ops"] <= 1e-4, name
        assert entry["transcripts"]["ir"] == entry["transcripts"]["tf"] and entry["transcripts"]["tf"], name
    assert "|IR-f64|" in output and "|TF-f64|" in output and "|IR-TF|" in output
    assert "resampl" in output.lower()  # 8 kHz and 44.1 kHz files are resampled with a warning


def test_verify_writes_a_plot(verified):
    _, layout, _ = verified
    assert (layout.verify_dir / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_transcribe_prints_what_tf_decodes(verified, full_build):
    report, _, _ = verified
    expected = next(e["transcripts"]["tf"] for e in report["files"].values() if e["source"].endswith("/LDC93S1.wav"))
    result = invoke("transcribe", str(DATA / "LDC93S1.wav"), "--target", "synthetic-0.8.2",
                    "--artifacts", str(full_build["artifacts"]))
    lines = result.stdout.strip().splitlines()
    stats = json.loads(lines[-1])
    assert lines[-2] == expected == stats["transcript"]
    assert stats["real_time_factor"] > 0 and stats["precision"] == "f32" and stats["audio_seconds"] == pytest.approx(2.9, abs=0.05)


def test_bad_audio_is_a_clear_error(full_build, tmp_path):
    bogus = tmp_path / "notes.wav"
    bogus.write_text("this is not audio")
    result = invoke("verify", "--target", "synthetic-0.8.2", "--audio", str(bogus),
                    "--artifacts", str(full_build["artifacts"]), check=False)
    assert result.returncode != 0 and str(bogus) in result.stdout and "Traceback" not in result.stdout
