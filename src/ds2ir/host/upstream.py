"""DeepSpeech's own source on the host: the release's verified source archive and the build context
of the image that installs it (Dockerfile.upstream)."""
from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from ds2ir.errors import ArchiveError, FetchError
from ds2ir.host import archive, fetch
from ds2ir.host.project import Project
from ds2ir.model.targets import SOURCE_ENTRY_POINT, ImageSpec

CONTEXT_SOURCE = "source"
#: what makes a tree DeepSpeech's source: the package's setup.py and the training entry point
REQUIRED_FILES = ("setup.py", SOURCE_ENTRY_POINT)


def fetch_source(spec: ImageSpec, project: Project, *, offline: bool = False, trust_on_first_use: bool = False) -> Path:
    """The cached, verified source archive the image installs (fetched on the host, never in a container),
    pinned in ``project``'s assets lock and kept in its cache."""
    assert spec.source_url is not None, "config.py resolves source_url for every image with source_release"
    try:
        return fetch.fetch(spec.source_url, lock_path=project.assets_lock, cache=project.cache, offline=offline,
                           trust_on_first_use=trust_on_first_use)
    except FetchError as exc:
        raise FetchError(
            f"Image '{spec.name}' installs DeepSpeech's training code from release {spec.source_release}'s source "
            f"archive {spec.source_url}. {exc}"
        ) from exc


@contextlib.contextmanager
def build_context(spec: ImageSpec, project: Path, source_archive: Path, files: Sequence[Path]) -> Iterator[Path]:
    """A temporary Docker build context: ``files`` of the checkout (the image's inputs: Dockerfile, package,
    lock, constraints) at their paths, and the archive's tree (its top directory stripped) under ``source/``;
    removed afterwards.

    A generated context keeps the archive out of the checkout and out of every other
    image's context; the archive is extracted here with ds2ir's checks, not by Docker.
    """
    assert spec.constraints is not None, "config.py requires constraints with source_release"
    with tempfile.TemporaryDirectory(prefix="ds2ir-context-") as tmp:
        context = Path(tmp)
        source = archive.extract(source_archive, context / CONTEXT_SOURCE)
        missing = [name for name in REQUIRED_FILES if not (source / name).is_file()]
        if missing:
            raise ArchiveError(
                f"The source archive {source_archive} ({spec.source_url}) has no {' or '.join(missing)} at its top "
                f"level, so it is not DeepSpeech's source tree and image '{spec.name}' cannot install it. Check "
                f"source_url of release '{spec.source_release}' in targets.toml and its entry in assets.lock.toml."
            )
        for path in files:
            copy = context / path.relative_to(project)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(str(path), str(copy))
        yield context
