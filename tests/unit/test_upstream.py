"""Exporter "deepspeech": its command line, the publish step, the build context, the image tag, the config."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence

import pytest

from ds2ir.errors import ArchiveError, ConfigError, MissingInputError
from ds2ir.host import upstream
from ds2ir.host.docker import Docker
from ds2ir.host.images import image_inputs, stage_image_tag
from ds2ir.model.layout import ArtifactLayout
from ds2ir.model.targets_file import TargetsFile, load_target, tomllib
from ds2ir.runner import Runner
from ds2ir.stages.freeze.upstream import export_command, run_export
from tests._support.checkout import CHECKOUT, targets_file
from tests._support.upstream_source import upstream_source_archive

PROJECT = CHECKOUT
TARGET = "deepspeech-0.8.2-upstream"


def _flags(command: Sequence[str]) -> dict:
    return dict(zip(command[2::2], command[3::2]))


def test_export_command_runs_deepspeech_py_with_the_architectures_flags():
    command = export_command(load_target(targets_file(), TARGET), Path("/ckpt"), Path("/out"), Path("/ckpt/alphabet.txt"))
    assert command[1] == "DeepSpeech.py" and len(command) % 2 == 0
    assert _flags(command) == {
        "--checkpoint_dir": "/ckpt", "--export_dir": "/out", "--scorer_path": "", "--alphabet_config_path": "/ckpt/alphabet.txt",
        "--n_hidden": "2048", "--n_steps": "16", "--relu_clip": "20.0", "--audio_sample_rate": "16000",
        "--feature_win_len": "32", "--feature_win_step": "20", "--export_beam_width": "500",
    }


def test_without_a_checkpoint_alphabet_deepspeechs_default_applies():
    command = export_command(load_target(targets_file(), TARGET), Path("/ckpt"), Path("/out"), None)
    assert "--alphabet_config_path" not in command


class FakeExporter(Runner):
    """Records the call; writes output_graph.pb into --export_dir unless told not to."""

    def __init__(self, *, writes: bool = True):
        super().__init__()
        self.writes = writes
        self.calls: List[tuple] = []

    def run(self, argv: Sequence[str], *, step: str, cwd: Optional[str] = None, **kwargs: object) -> str:  # type: ignore[override]
        self.calls.append((list(argv), cwd))
        if self.writes:
            export_dir = Path(_flags(argv)["--export_dir"])
            export_dir.mkdir(parents=True)
            (export_dir / "output_graph.pb").write_bytes(b"graph")
        return ""


def _layout(tmp_path: Path) -> ArtifactLayout:
    """A checkpoint directory with an alphabet, and a source directory with DeepSpeech.py."""
    layout = ArtifactLayout(tmp_path / "artifacts", TARGET)
    layout.checkpoint_dir.mkdir(parents=True)
    (layout.checkpoint_dir / "alphabet.txt").write_text("a\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "DeepSpeech.py").write_text("")
    return layout


def test_run_export_runs_in_the_source_directory_and_publishes_the_graph(tmp_path):
    layout, runner = _layout(tmp_path), FakeExporter()
    staging = tmp_path / "staging"
    command = run_export(load_target(targets_file(), TARGET), layout, runner, source_dir=tmp_path / "src", staging=staging)
    assert runner.calls == [(command, tmp_path / "src")]
    assert _flags(command)["--alphabet_config_path"] == str(layout.checkpoint_dir / "alphabet.txt")
    assert layout.frozen_graph.read_bytes() == b"graph" and not staging.exists()


def test_an_exporter_that_writes_no_graph_is_a_clear_error(tmp_path):
    layout = _layout(tmp_path)
    with pytest.raises(MissingInputError, match=r"finished without writing .*output_graph\.pb"):
        run_export(load_target(targets_file(), TARGET), layout, FakeExporter(writes=False), source_dir=tmp_path / "src",
                            staging=tmp_path / "staging")
    assert not layout.frozen_graph.exists()


def test_a_container_without_deepspeech_py_says_how_to_build_it(tmp_path):
    layout, runner = _layout(tmp_path), FakeExporter()
    with pytest.raises(MissingInputError, match=r"DeepSpeech\.py does not exist.*invoke build --target"):
        run_export(load_target(targets_file(), TARGET), layout, runner, source_dir=tmp_path, staging=tmp_path / "staging")
    assert runner.calls == []


def test_build_context_holds_the_package_lock_constraints_and_the_source_tree(tmp_path):
    spec = load_target(targets_file(), TARGET).freeze_image
    archive = upstream_source_archive(tmp_path / "v0.8.2.tar.gz")
    with upstream.build_context(spec, PROJECT, archive, image_inputs(spec, PROJECT)) as context:
        for relative in ("source/setup.py", "source/DeepSpeech.py", "source/data/alphabet.txt", spec.dockerfile,
                         spec.lock, str(spec.constraints), "pyproject.toml", "src/ds2ir/stages/freeze/upstream.py"):
            assert (context / relative).is_file(), relative
        assert not list((context / "src").rglob("__pycache__"))
    assert not context.exists()


def test_a_source_archive_without_deepspeech_py_is_refused(tmp_path):
    spec = load_target(targets_file(), TARGET).freeze_image
    archive = upstream_source_archive(tmp_path / "v0.8.2.tar.gz", omit=("DeepSpeech.py",))
    with pytest.raises(ArchiveError, match=r"has no DeepSpeech\.py .*not DeepSpeech's source tree"):
        with upstream.build_context(spec, PROJECT, archive, image_inputs(spec, PROJECT)):
            pass  # pragma: no cover


def _project_copy(tmp_path: Path) -> Path:
    spec = load_target(targets_file(), TARGET).freeze_image
    project = tmp_path / "project"
    for name in ("pyproject.toml", spec.dockerfile, spec.lock, str(spec.constraints)):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT / name, project / name)
    (project / "src").mkdir()
    return project


def test_image_tag_follows_the_source_archive_and_the_constraints(tmp_path):
    spec = load_target(targets_file(), TARGET).freeze_image
    project, docker = _project_copy(tmp_path), Docker(Runner(dry_run=True))
    first = upstream_source_archive(tmp_path / "a.tar.gz")
    other = upstream_source_archive(tmp_path / "b.tar.gz", omit=("VERSION",))
    tag = stage_image_tag(docker, spec, spec.base_image, project, source=first)
    assert tag == stage_image_tag(docker, spec, spec.base_image, project, source=first)
    assert tag != stage_image_tag(docker, spec, spec.base_image, project, source=other)
    with (project / str(spec.constraints)).open("a") as constraints:
        constraints.write("# changed\n")
    assert tag != stage_image_tag(docker, spec, spec.base_image, project, source=first)
    with pytest.raises(MissingInputError, match="source archive"):
        stage_image_tag(docker, spec, spec.base_image, project)


def test_build_args_pass_the_constraints():
    assert load_target(targets_file(), TARGET).freeze_image.build_args()["CONSTRAINTS_FILE"] == "locks/deepspeech-0.8.2.constraints.txt"


@pytest.mark.parametrize("extra, key, message", [
    ('[targets."x"]\nextends = "synthetic-small"\nexporter = "deepspeech"\n',
     "targets.x.freeze_image", "installs none"),
    ('[targets."x"]\nextends = "deepspeech-0.8.2-upstream"\nn_context = 5\n',
     "targets.x.exporter", "no flags for n_input and n_context"),
    ('[images."y"]\nstage = "convert"\ndockerfile = "D"\nbase_image = "b"\npython = "3.11"\nlock = "l.txt"\n'
     'source_release = "0.8.2"\nconstraints = "c.txt"\n', "images.y.source_release", "only freeze images"),
    ('[images."y"]\nstage = "freeze"\ndockerfile = "D"\nbase_image = "b"\npython = "3.7"\nlock = "l.txt"\n'
     'constraints = "c.txt"\n', "images.y.source_release", "missing required key"),
    ('[images."y"]\nstage = "freeze"\ndockerfile = "D"\nbase_image = "b"\npython = "3.7"\nlock = "l.txt"\n'
     'source_release = "0.7"\nconstraints = "c.txt"\n', "images.y.source_release", "'0.7' is not defined"),
])
def test_config_refuses_what_the_upstream_exporter_cannot_do(extra, key, message):
    data = tomllib.loads((PROJECT / "targets.toml").read_text() + "\n" + extra)
    with pytest.raises(ConfigError) as caught:
        TargetsFile(data, source="targets.toml")
    assert caught.value.key == key and message in str(caught.value)


def test_the_upstream_target_resolves_the_release_source():
    image = load_target(targets_file(), TARGET).freeze_image
    assert (image.source_release, image.dockerfile) == ("0.8.2", "Dockerfile.upstream")
    assert image.source_url == "https://github.com/mozilla/DeepSpeech/archive/v0.8.2.tar.gz"
