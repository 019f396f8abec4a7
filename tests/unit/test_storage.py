"""Where stage containers find the artifacts (storage.py): the choice, and what a volume run sends and mounts.
The real second engine is tests/e2e/test_remote_engine.py's."""
from __future__ import annotations

import tarfile

import pytest

from ds2ir.errors import ConfigError
from ds2ir.host import storage
from ds2ir.host.docker import Docker
from tests.unit.test_docker_commands import Recorder


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    monkeypatch.setattr(storage, "_decided", {})
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "CONTAINER_HOST", storage.STORAGE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-config"))


def test_the_local_default_engine_gets_bind_mounts_without_a_probe(tmp_path):
    runner = Recorder()
    assert storage.choose(Docker(runner), tmp_path, "i", "linux/amd64") == "bind" and runner.calls == []


def test_another_engine_is_probed_once_and_gets_a_volume_when_it_cannot_see_the_probe_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///elsewhere.sock")
    runner = Recorder(failing=("docker run",))
    assert storage.choose(Docker(runner), tmp_path, "i", "linux/amd64") == "volume"
    assert storage.choose(Docker(runner), tmp_path, "i", "linux/amd64") == "volume"
    [probe] = runner.calls
    assert probe["argv"][-3:-1] == ["i", "-c"] and probe["argv"][-1].startswith("test -f /artifacts/.ds2ir-probe-")
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    storage._decided.clear()
    assert storage.choose(Docker(Recorder()), tmp_path, "i", "linux/amd64") == "bind"  # it saw the file


def test_the_choice_can_be_forced_either_way_and_a_wrong_value_is_refused(tmp_path, monkeypatch):
    for forced in storage.STORAGES:
        monkeypatch.setenv(storage.STORAGE_ENV, forced)
        runner = Recorder()
        assert storage.choose(Docker(runner), tmp_path, "i", "linux/amd64") == forced and runner.calls == []
    monkeypatch.setenv(storage.STORAGE_ENV, "nfs")
    with pytest.raises(ConfigError, match="DS2IR_ARTIFACTS_STORAGE='nfs' is not a way to reach the artifacts"):
        storage.choose(Docker(Recorder()), tmp_path, "i", "linux/amd64")


def test_a_volume_run_sends_the_target_without_host_only_files_and_mounts_inputs_read_only(tmp_path):
    artifacts = tmp_path / "artifacts"
    for name in ("t/frozen/output_graph.pb", "t/checkpoint/w", "t/.stamps/freeze.json", "t/.ir.tmp-x/a", "other/x"):
        (artifacts / name).parent.mkdir(parents=True, exist_ok=True)
        (artifacts / name).write_text(name)
    targets, audio = tmp_path / "targets.toml", tmp_path / "a.wav"
    targets.write_text("t")
    audio.write_text("w")
    sent = []

    class Capturing(Recorder):
        def run(self, argv, *, step, error=None, **options):  # type: ignore[override]
            if options.get("stdin") is not None:
                with tarfile.open(fileobj=options["stdin"]) as tar:
                    sent.append(sorted(tar.getnames()))
            return super().run(argv, step=step, **options)

    run = storage.VolumeRun(Docker(Capturing()), artifacts=artifacts, image="i", platform="linux/amd64", scope=["t"])
    mounts = run.mounts((targets, "/etc/ds2ir/targets.toml"),
                        {artifacts / "t/checkpoint": "/artifacts/t/checkpoint", audio: "/input/a.wav"})
    assert sent[0] == ["t", "t/frozen", "t/frozen/output_graph.pb"]  # no stamps, temporaries or read-only checkpoint
    assert sorted(sent[1:]) == [[".", "./w"], ["a.wav"], ["targets.toml"]]
    assert mounts[0] == f"type=volume,source={storage.artifacts_volume(artifacts)},target=/artifacts"
    assert sorted(mount.split(",target=")[1] for mount in mounts[1:]) == [
        "/artifacts/t/checkpoint,readonly", "/etc/ds2ir,readonly", "/input,readonly"]
    incoming = artifacts / ".t.tmp-in"
    (incoming / "checkpoint").mkdir(parents=True)  # the read-only volume's mountpoint comes back empty
    (incoming / "frozen").mkdir()
    (incoming / "frozen" / "output_graph.pb").write_text("new graph")
    (incoming / ".stamps").mkdir()
    run._publish(incoming, artifacts / "t")
    assert (artifacts / "t/checkpoint/w").read_text() == "t/checkpoint/w"  # never replaced by the empty mountpoint
    assert (artifacts / "t/frozen/output_graph.pb").read_text() == "new graph"
    assert (artifacts / "t/.stamps/freeze.json").read_text() == "t/.stamps/freeze.json"
