"""Coqui STT's exporter command: its flags follow the target (no TensorFlow needed to test)."""
from __future__ import annotations

from pathlib import Path

from ds2ir.model.targets_file import load_target
from ds2ir.stages.freeze import coqui
from tests._support.checkout import targets_file


def test_export_command_asks_for_the_frozen_graph_with_the_targets_architecture():
    target = load_target(targets_file(), "coqui-stt-1.4.0")
    command = coqui.export_command(target, Path("/ckpt"), Path("/ckpt/alphabet.txt"), Path("/out"))
    assert command[1:3] == ["-m", "coqui_stt_training.export"]
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags == {
        "--checkpoint_dir": "/ckpt", "--alphabet_config_path": "/ckpt/alphabet.txt", "--export_dir": "/out",
        "--export_tflite": "false", "--n_hidden": "2048", "--n_steps": "16", "--relu_clip": "20.0",
        "--audio_sample_rate": "16000", "--feature_win_len": "32", "--feature_win_step": "20",
        "--export_beam_width": "500",
    }
