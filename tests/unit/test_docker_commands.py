"""The Docker command lines ds2ir runs and how it reads their answers, against a runner that records
them (the engine's own behaviour is the e2e tests'). Mutation testing found these unpinned."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from ds2ir.errors import CommandError, ConfigError, DockerUnavailableError, MissingInputError
from ds2ir.host import docker as docker_module
from ds2ir.host import launch, testcoverage
from ds2ir.host.compose import exit_codes
from ds2ir.host.docker import Docker
from ds2ir.host.images import available_base_image, build_stage_image, ensure_stage_image, image_inputs, stage_image_tag
from ds2ir.model.targets_file import load_target
from ds2ir.runner import Runner
from tests._support.checkout import targets_file
from tests._support.stages import run_stage

PROJECT = Path(__file__).resolve().parents[2]


class Recorder(Runner):
    """Records every command; answers from ``answers`` (first matching prefix of the joined command line),
    fails those in ``failing``, and says whether probes succeed from ``probes``."""

    def __init__(self, answers: Optional[Dict[str, str]] = None, failing: tuple = (), probes: tuple = (), dry_run=False):
        super().__init__(dry_run=dry_run, echo_output=False, say=lambda message: None)
        self.answers, self.failing, self.probes = answers or {}, failing, probes
        self.calls: List[Dict[str, object]] = []
        self.probed: List[List[str]] = []
        self.probe_timeouts: List[Optional[float]] = []

    def run(self, argv, *, step, error=CommandError, **options):  # type: ignore[override]
        argv = [str(a) for a in argv]
        self.calls.append({"argv": argv, "step": step, **options})
        line = " ".join(argv)
        if any(line.startswith(prefix) for prefix in self.failing):
            raise error(step=step, command=argv, exit_code=1, log_tail="Error: no such object\nthe last line")
        return next((answer for prefix, answer in self.answers.items() if line.startswith(prefix)), "")

    def succeeds(self, argv, *, timeout=None):  # type: ignore[override]
        self.probed.append([str(a) for a in argv])
        self.probe_timeouts.append(timeout)
        return any(" ".join(map(str, argv)).startswith(prefix) for prefix in self.probes)


def commands(runner: Recorder) -> List[str]:
    return [" ".join(call["argv"]) for call in runner.calls]  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_forwarded_environment(monkeypatch):
    for key in launch.FORWARDED_ENVIRONMENT + (testcoverage.ENV, docker_module.TIMEOUT_ENV):
        monkeypatch.delenv(key, raising=False)


def test_a_stage_runs_without_network_as_the_caller_with_its_mounts_and_is_removed_after(tmp_path, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    runner = Recorder(answers={"docker run": "out\n"})
    artifacts, targets, checkpoint = tmp_path / "artifacts", tmp_path / "targets.toml", tmp_path / "ckpt"
    output = run_stage(Docker(runner), step="freeze stage", image="ds2ir/freeze:1", args=["freeze", "--target", "t"],
                                      artifacts=artifacts, targets=targets, read_only={checkpoint: "/artifacts/t/checkpoint"},
                                      capture=True, entrypoint="python", timeout=30.0, platform="linux/arm64")
    assert output == "out\n" and artifacts.is_dir()  # --mount needs the source to exist
    [call] = runner.calls
    argv = call["argv"]
    name = argv[argv.index("--name") + 1]
    assert re.fullmatch(r"ds2ir-freeze-stage-[0-9a-f]{8}", name)
    assert argv == [
        "docker", "run", "--rm", "--platform", "linux/arm64", "--name", name, "--network", "none",
        "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp", "-e", "CI=true", "-e", "NNCF_CI=1",
        "-e", "ONEDNN_MAX_CPU_ISA=AVX2",
        "--label", f"ds2ir.artifacts={artifacts}", "--label", f"ds2ir.owner-pid={os.getpid()}",
        "--mount", f"type=bind,source={artifacts},target=/artifacts",
        "--mount", f"type=bind,source={targets},target=/etc/ds2ir/targets.toml,readonly",
        "--mount", f"type=bind,source={checkpoint},target=/artifacts/t/checkpoint,readonly",
        "--entrypoint", "python", "ds2ir/freeze:1", "freeze", "--target", "t",
    ]
    assert (call["step"], call["capture"], call["timeout"]) == ("freeze stage", True, 30.0)
    assert runner.probed == [["docker", "rm", "-f", name]]


def test_a_failed_stage_is_a_container_error_naming_the_image_and_its_container_is_still_removed(tmp_path):
    runner = Recorder(failing=("docker run",))
    with pytest.raises(CommandError) as excinfo:
        run_stage(Docker(runner), step="convert", image="ds2ir/convert:2", args=["convert"], artifacts=tmp_path,
                                 targets=tmp_path / "t.toml")
    assert type(excinfo.value).__name__ == "ContainerError" and excinfo.value.image == "ds2ir/convert:2"
    assert [probe[:3] for probe in runner.probed] == [["docker", "rm", "-f"]]


def test_a_dry_run_creates_and_removes_nothing(tmp_path):
    runner = Recorder(dry_run=True)
    run_stage(Docker(runner), step="s", image="i", args=["a"], artifacts=tmp_path / "artifacts", targets=tmp_path / "t")
    assert not (tmp_path / "artifacts").exists() and runner.probed == []
    assert "--entrypoint" not in runner.calls[0]["argv"] and runner.calls[0]["argv"][-2:] == ["i", "a"]


def test_image_id_is_the_stripped_answer_and_none_for_a_missing_image():
    runner = Recorder(answers={"docker image inspect --format {{.Id}} present": "sha256:abc\n"},
                      failing=("docker image inspect --format {{.Id}} missing",))
    engine = Docker(runner, timeout=7.0)
    assert engine.image_id("present") == "sha256:abc" and engine.image_id("missing") is None
    assert [call["timeout"] for call in runner.calls] == [7.0, 7.0]
    assert Docker(Recorder(answers={"docker image inspect --format {{.Size}}": " 1234\n"})).image_size("x") == 1234


def test_the_offline_stand_in_is_used_where_it_exists():
    runner = Recorder(answers={"docker image inspect --format {{.Id}} ds2ir-offline/python:3.7-slim": "sha256:1"})
    assert Docker(runner).resolve_base_image("python:3.7-slim") == "ds2ir-offline/python:3.7-slim"
    assert Docker(Recorder(failing=("docker image",))).resolve_base_image("python:3.7-slim") == "python:3.7-slim"


def test_a_present_image_is_not_built_again_and_a_missing_one_is_built_with_its_build_args():
    spec = load_target(targets_file(), "synthetic-small").freeze_image
    engine = Docker(Recorder())
    tag = stage_image_tag(engine, spec, "base:1", PROJECT)
    present = Recorder(answers={"docker image inspect": "sha256:1"})
    assert ensure_stage_image(Docker(present), spec, PROJECT, base_image="base:1") == tag
    assert not any(line.startswith("docker build") for line in commands(present))
    missing = Recorder(answers={"docker image inspect --format {{.Id}} base:1": "sha256:b"})
    assert ensure_stage_image(Docker(missing), spec, PROJECT, base_image="base:1") == tag
    build = [call for call in missing.calls if call["argv"][1] == "build"]
    assert [call["argv"] for call in build] == [[
        "docker", "build", "--platform", "linux/amd64", "-f", str(PROJECT / spec.dockerfile), "-t", tag,
        "--build-arg", "BASE_IMAGE=base:1", "--build-arg", f"LOCK_FILE={spec.lock}", str(PROJECT)]]
    assert build[0]["env"] == {"DOCKER_BUILDKIT": "0"} and build[0]["timeout"] == docker_module.BUILD_TIMEOUT
    nocache = Recorder(answers={"docker image inspect": "sha256:b"})
    build_stage_image(Docker(nocache), spec, PROJECT, "t:1", base_image="base:1", no_cache=True)
    assert "--no-cache" in nocache.calls[-1]["argv"]


def test_a_base_image_that_cannot_be_pulled_names_the_image_the_key_and_the_registrys_answer():
    spec = load_target(targets_file(), "synthetic-small").freeze_image
    runner = Recorder(failing=("docker image inspect", "docker pull"))
    with pytest.raises(Exception) as excinfo:
        available_base_image(Docker(runner), spec)
    assert type(excinfo.value).__name__ == "BaseImageError"
    message = str(excinfo.value)
    assert "The base image python:3.7-slim of image 'freeze-tf1.15.5'" in message and "the last line." in message
    assert "ds2ir-offline/python:3.7-slim" in message and "invoke base-images" in message
    assert "docker pull --platform linux/amd64 python:3.7-slim" in commands(runner)
    pulled = Recorder(answers={"docker image inspect --format {{.Id}} python": ""}, failing=("docker image inspect",))
    assert available_base_image(Docker(pulled), spec) == "python:3.7-slim"


def test_a_source_image_without_its_archive_is_refused():
    spec = load_target(targets_file(), "deepspeech-0.8.2-upstream").freeze_image
    with pytest.raises(MissingInputError, match="installs release 0.8.2's source archive, which was not given"):
        stage_image_tag(Docker(Recorder()), spec, "base", PROJECT)


def test_stray_containers_are_those_whose_starting_process_is_gone(tmp_path):
    listing = f"alive {os.getpid()}\ngone 999999999\nunlabelled \nodd abc\n"
    runner = Recorder(answers={"docker ps": listing})
    assert Docker(runner).remove_stray_containers(tmp_path) == ["gone", "unlabelled", "odd"]
    assert commands(runner) == [
        f'docker ps -a --filter label=ds2ir.artifacts={tmp_path} --format {{{{.Names}}}} {{{{.Label "ds2ir.owner-pid"}}}}',
        "docker rm -f gone", "docker rm -f unlabelled", "docker rm -f odd"]


def test_process_alive():
    assert docker_module._process_alive(str(os.getpid())) and docker_module._process_alive(" 1 ")
    assert not docker_module._process_alive("999999999") and not docker_module._process_alive("")


def test_compose_exit_codes_read_each_services_last_container(tmp_path):
    runner = Recorder(answers={"dc ps -q freeze": "id1\nid0\n", "docker inspect --format {{.State.ExitCode}} id1": "3\n"})
    assert exit_codes(Docker(runner), ["dc"], cwd=tmp_path, env={"A": "1"}) == {"freeze": 3, "convert": -1}
    assert runner.calls[0]["cwd"] == tmp_path and runner.calls[0]["env"] == {"A": "1"}


@pytest.mark.parametrize("probes, command", [
    (("docker compose version", "docker-compose version"), ["docker", "compose"]),
    (("docker-compose version",), ["docker-compose"]),
])
def test_compose_v2_is_preferred_then_v1(probes, command):
    assert Docker(Recorder(probes=probes)).compose_command() == command


def test_no_compose_is_a_clear_error():
    with pytest.raises(DockerUnavailableError, match="Neither 'docker compose' \\(v2\\) nor 'docker-compose' \\(v1\\)"):
        Docker(Recorder()).compose_command()


def test_image_packages_are_the_sorted_pinned_lines_of_pip_list_and_the_container_is_removed():
    runner = Recorder(answers={"docker run": "b==2\nWARNING: x\na==1\n"})
    assert Docker(runner).image_packages("img") == ["a==1", "b==2"]
    argv = runner.calls[0]["argv"]
    assert argv[argv.index("--network") + 1] == "none" and argv[-6:] == [
        "img", "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"]
    assert runner.probed == [["docker", "rm", "-f", argv[argv.index("--name") + 1]]]


@pytest.mark.parametrize("value, seconds", [("", 60.0), ("5", 5.0), ("0.5", 0.5)])
def test_the_docker_timeout_setting(monkeypatch, value, seconds):
    monkeypatch.setenv(docker_module.TIMEOUT_ENV, value)
    assert docker_module.default_timeout() == seconds and Docker(Recorder()).timeout == seconds


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "soon"])
def test_a_docker_timeout_that_is_no_positive_number_is_refused(monkeypatch, value):
    monkeypatch.setenv(docker_module.TIMEOUT_ENV, value)
    with pytest.raises(ConfigError, match=f"DS2IR_DOCKER_TIMEOUT must be a positive number of seconds, got '{value}'"):
        docker_module.default_timeout()


def test_a_call_past_its_time_limit_names_the_engine_and_the_setting():
    class Hung(Recorder):
        def run(self, argv, *, step, error=CommandError, **options):  # type: ignore[override]
            from ds2ir.errors import CommandTimeoutError
            raise CommandTimeoutError(step=step, command=list(argv), timeout=options["timeout"], log_tail="")

    with pytest.raises(DockerUnavailableError) as excinfo:
        Docker(Hung(), timeout=2.5).preflight()
    message = str(excinfo.value)
    assert "did not finish 'docker version --format '{{.Server.Version}}'' within 2.5 s, so it was stopped" in message
    assert "daemon at unix:///var/run/docker.sock" in message and "DS2IR_DOCKER_TIMEOUT" in message


@pytest.mark.parametrize("answer, host, expected", [
    ("docker: not installed", None, "The Docker client 'docker' is not installed"),
    ("Got Permission Denied while trying to connect", None, "is not accessible to this user (permission denied)"),
    ("Cannot connect", "tcp://10.0.0.1:2375", "No Docker daemon answers at DOCKER_HOST=tcp://10.0.0.1:2375"),
    ("Cannot connect", None, "The Docker daemon is not running"),
])
def test_preflight_says_why_the_engine_does_not_answer(monkeypatch, answer, host, expected):
    if host:
        monkeypatch.setenv("DOCKER_HOST", host)
    else:
        monkeypatch.delenv("DOCKER_HOST", raising=False)

    class Refusing(Recorder):
        def run(self, argv, *, step, error=CommandError, **options):  # type: ignore[override]
            raise CommandError(step=step, command=list(argv), exit_code=1, log_tail=answer)

    with pytest.raises(DockerUnavailableError, match=re.escape(expected)):
        Docker(Refusing()).preflight()
    assert Docker(Recorder(answers={"docker version": " 20.10.5\n"})).preflight() == "20.10.5"


def test_a_stage_streams_its_output_unless_asked_and_creates_a_missing_artifacts_tree(tmp_path):
    runner = Recorder()
    artifacts = tmp_path / "a" / "b" / "artifacts"
    run_stage(Docker(runner, timeout=9.0), step="s", image="i", args=["a"], artifacts=artifacts, targets=tmp_path / "t")
    assert artifacts.is_dir() and runner.calls[0]["capture"] is False and runner.probe_timeouts == [9.0]


def test_under_invoke_test_coverage_a_stage_gets_the_coverage_mounts(tmp_path, monkeypatch):
    monkeypatch.setenv(testcoverage.ENV, str(tmp_path / "cov"))
    runner = Recorder()
    run_stage(Docker(runner), step="s", image="i", args=["a"], artifacts=tmp_path, targets=tmp_path / "t")
    argv = runner.calls[0]["argv"]
    options = testcoverage.container_options(tmp_path / "cov")
    assert argv[:3] == ["docker", "run", "--rm"] and argv[-len(options) - 2:] == [*options, "i", "a"]


UPSTREAM = load_target(targets_file(), "deepspeech-0.8.2-upstream").freeze_image  # has constraints and a source archive


@pytest.fixture
def upstream_project(tmp_path: Path) -> Path:
    """The files the upstream image is built from."""
    project = tmp_path / "project"
    for name in ("pyproject.toml", UPSTREAM.dockerfile, UPSTREAM.lock, UPSTREAM.constraints):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(str(PROJECT / name), str(project / name))
    shutil.copytree(str(PROJECT / "src"), str(project / "src"), ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return project


def test_the_tag_of_an_image_installing_a_source_archive_follows_the_archive_and_the_constraints(tmp_path, upstream_project):
    source = tmp_path / "v0.8.2.tar.gz"
    source.write_bytes(b"the source archive")
    engine = Docker(Recorder())
    tag = stage_image_tag(engine, UPSTREAM, "base", upstream_project, source=source)
    assert re.fullmatch(rf"ds2ir/{UPSTREAM.name}:[0-9a-f]{{12}}", tag)
    assert upstream_project / UPSTREAM.constraints in image_inputs(UPSTREAM, upstream_project)
    source.write_bytes(b"another source archive")
    other_source = stage_image_tag(engine, UPSTREAM, "base", upstream_project, source=source)
    with open(upstream_project / UPSTREAM.constraints, "a") as handle:
        handle.write("# changed\n")
    other_constraints = stage_image_tag(engine, UPSTREAM, "base", upstream_project, source=source)
    assert len({tag, other_source, other_constraints}) == 3
