"""The application image (`app_image`): configuration, and what `invoke transcribe` checks before any container."""
from __future__ import annotations

from pathlib import Path

import pytest

from ds2ir.errors import ConfigError, DecoderError, MissingInputError
from ds2ir.host import applications, build
from ds2ir.host.docker import Docker
from ds2ir.model.targets_file import TargetsFile, load_target
from ds2ir.runner import Runner
from tests._support.checkout import CHECKOUT, project, targets_file


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text((CHECKOUT / "targets.toml").read_text() + text)
    return path


def test_targets_transcribe_in_the_app_image_with_the_decoder():
    target = load_target(targets_file(), "ldc93s1-smoke@int8")
    assert target.application_image.name == "app-ov2025.3" and target.application_image.stage == "app"
    lock = (CHECKOUT / target.application_image.lock).read_text()
    assert "ds-ctcdecoder==0.9.3" in lock and "openvino==2025.3.0" in lock and "numpy==1.26.4" in lock


def test_the_2024_6_application_image_stays_a_target():
    target = load_target(targets_file(), "synthetic-small-app-ov2024.6")
    assert target.application_image.name == "app-ov2024.6" and target.application_image.python == "3.9"
    assert "openvino==2024.6.0" in (CHECKOUT / target.application_image.lock).read_text()
    assert load_target(targets_file(), "deepspeech-0.8.2-app-ov2024.6").application_image.name == "app-ov2024.6"


def test_without_app_image_the_convert_image_runs_the_ir(tmp_path):
    path = _write(tmp_path, '\n[targets."bare"]\nrelease = "0.8.2"\ncheckpoint = "synthetic"\n'
                            'freeze_image = "freeze-tf1.15.5"\nconvert_image = "convert-ov2024.6-notf"\nir_precision = "FP32"\n')
    target = TargetsFile.load(path).target("bare")
    assert target.app_image is None and target.application_image.name == "convert-ov2024.6-notf"


def test_the_app_image_is_no_build_input():
    """Changing the image that runs the finished IR must not make a build stale."""
    target = load_target(targets_file(), "synthetic-small")
    assert "app_image" not in target.fingerprint()


@pytest.mark.parametrize("value, message", [
    ('"nope"', "image 'nope' is not defined"),
    ('"freeze-tf1.15.5"', "is a freeze image; the application needs OpenVINO"),
    ("3", "must be str"),
])
def test_app_image_must_name_an_openvino_image(tmp_path, value, message):
    path = _write(tmp_path, f'\n[targets."x"]\nextends = "synthetic-small"\napp_image = {value}\n')
    with pytest.raises(ConfigError, match=f"targets.x.app_image.*{message}"):
        TargetsFile.load(path)


@pytest.fixture
def wav(tmp_path) -> Path:
    path = tmp_path / "a.wav"
    path.write_bytes(b"RIFF")
    return path


def _builder(target, tmp_path) -> build.Builder:
    return build.Builder(target, project=project(tmp_path / "artifacts"),
                         docker=Docker(Runner(dry_run=True, say=lambda message: None)))


def test_beam_search_in_an_image_without_the_decoder_fails_before_any_container(tmp_path, wav):
    path = _write(tmp_path, '\n[targets."greedy-only"]\nextends = "synthetic-small"\napp_image = "convert-ov2024.6"\n')
    builder = _builder(TargetsFile.load(path).target("greedy-only"), tmp_path)
    for options in ({"beam_width": 16}, {"scorer": wav}):
        with pytest.raises(DecoderError, match="transcribes in image 'convert-ov2024.6', whose lock .* does not install it"):
            applications.transcribe(builder, wav, device="CPU", precision="f32", **options)


def test_scorer_and_options_are_checked_on_the_host(tmp_path, wav):
    builder = _builder(load_target(targets_file(), "ldc93s1-smoke"), tmp_path)
    with pytest.raises(MissingInputError, match="does not exist"):
        applications.transcribe(builder, wav, device="CPU", precision="f32", scorer=tmp_path / "none.scorer")
    with pytest.raises(DecoderError, match="is not a DeepSpeech scorer"):
        applications.transcribe(builder, wav, device="CPU", precision="f32", scorer=wav)
    with pytest.raises(ConfigError, match="need --scorer"):
        applications.transcribe(builder, wav, device="CPU", precision="f32", lm_alpha=1.0, lm_beta=1.0)


def test_an_audio_path_that_is_not_a_file_is_refused_on_the_host(tmp_path, wav):
    from ds2ir.errors import AudioError
    from tests._support.fifo import fifo

    builder = _builder(load_target(targets_file(), "ldc93s1-smoke"), tmp_path)
    with pytest.raises(MissingInputError, match="The audio file .* does not exist"):
        applications.transcribe(builder, tmp_path / "absent.wav", device="CPU", precision="f32")
    with pytest.raises(AudioError, match="is a directory, not a regular file"):
        applications.transcribe(builder, tmp_path, device="CPU", precision="f32")
    with fifo(tmp_path / "pipe.wav") as path, pytest.raises(AudioError, match="is a FIFO"):
        applications.transcribe(builder, path, device="CPU", precision="f32")
