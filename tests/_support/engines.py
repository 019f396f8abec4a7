"""Moving images between two engines on one machine (`docker save | podman load`), for engine tests."""
from __future__ import annotations

import subprocess

from ds2ir.host.docker import Docker


def copy_image(source: Docker, destination: Docker, tag: str) -> None:
    """Load ``tag`` from ``source`` into ``destination`` unless it has it: the content tag stays the same."""
    if destination.image_id(tag):
        return
    saver = subprocess.Popen([source.executable, "save", tag], stdout=subprocess.PIPE)
    try:
        assert saver.stdout is not None
        loaded = subprocess.run([destination.executable, "load", "-q"], stdin=saver.stdout, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, universal_newlines=True)
    finally:
        saver.stdout.close()  # type: ignore[union-attr]
        saver_code = saver.wait()
    assert saver_code == 0 and loaded.returncode == 0, loaded.stdout
    assert destination.image_id(tag), f"{tag} did not arrive in {destination.engine()}"
