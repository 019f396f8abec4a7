"""Offline stand-ins for public base images (``python:3.7-slim`` and friends).

On hosts that cannot pull from a registry: a Debian bookworm minbase root filesystem
made by debootstrap, plus a relocatable CPython copied from the host (e.g. pyenv's
``/root/.pyenv/versions/3.7.16``) at the same path, imported with ``docker import`` as
``ds2ir-offline/<public name>``. Builds pick the stand-in up automatically
(:meth:`ds2ir.host.docker.Docker.resolve_base_image`). Hosts that can pull never need this.
"""
from __future__ import annotations

import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional

from ds2ir.errors import ConfigError, MissingInputError
from ds2ir.host.docker import BUILD_TIMEOUT, Docker, offline_substitute
from ds2ir.runner import Runner

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_PYTHON_ROOT = Path("/root/.pyenv/versions")
# Shared libraries a CPython build and the TF / OpenVINO wheels load at run time.
RUNTIME_PACKAGES = (
    "ca-certificates", "libssl3", "libffi8", "libbz2-1.0", "liblzma5", "libsqlite3-0",
    "libreadline8", "libncursesw6", "libexpat1", "libuuid1", "zlib1g", "libgomp1", "libstdc++6",
)
# Only pip and setuptools come along from the host interpreter's site-packages.
_KEEP_SITE_PACKAGES = re.compile(r"^(pip|setuptools|pkg_resources|_distutils_hack|distutils-precedence\.pth)")


def python_version_of(public_image: str) -> str:
    """'python:3.7-slim' -> '3.7'."""
    match = re.match(r"^(?:docker\.io/)?(?:library/)?python:(\d+\.\d+)", public_image)
    if not match:
        raise ConfigError(
            f"cannot build an offline stand-in for base image '{public_image}': only python:X.Y[-variant] "
            f"images are supported. Pull it on a connected host and 'docker save'/'docker load' it instead."
        )
    return match.group(1)


def find_python(root: Path, version: str) -> Path:
    """The newest relocatable CPython X.Y.* under ``root``."""
    found = sorted(
        (p for p in root.glob(f"{version}.*") if re.fullmatch(rf"{re.escape(version)}\.\d+", p.name)),
        key=lambda p: int(p.name.rsplit(".", 1)[1]),
    )
    if not found or not (found[-1] / "bin" / "python3").exists():
        raise MissingInputError(
            f"No relocatable CPython {version} under {root}. Install one there (e.g. 'pyenv install {version}') "
            f"or point --python-root at a directory holding {version}.N builds."
        )
    return found[-1]


def ensure_rootfs(runner: Runner, cache: Path, mirror: str) -> Path:
    """A debootstrapped minbase root filesystem, made once and cached."""
    rootfs = cache / f"{SUITE}-minbase"
    if (rootfs / "etc" / "debian_version").exists():
        return rootfs
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{SUITE}-", dir=cache))
    try:
        runner.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(RUNTIME_PACKAGES)}", SUITE, staging, mirror],
            step="debootstrap",
        )
        staging.rename(rootfs)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return rootfs


def _write_image_tar(rootfs: Path, python: Path, out: Path) -> None:
    site = python / "lib" / f"python{python.name.rsplit('.', 1)[0]}" / "site-packages"
    stdlib_tests = site.parent / "test"

    def keep(info: tarfile.TarInfo) -> Optional[tarfile.TarInfo]:
        path = Path("/" + info.name)
        if "__pycache__" in path.parts or path == stdlib_tests or stdlib_tests in path.parents:
            return None
        if site in path.parents and path.parent == site and not _KEEP_SITE_PACKAGES.match(path.name):
            return None
        return info

    def traversable_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        if info.name == "./root":
            info.mode = 0o755  # containers may run as the caller's UID: /root must be traversable
        return info

    with tarfile.open(out, "w") as tar:
        tar.add(str(rootfs), arcname=".", filter=traversable_root)
        tar.add(str(python), arcname=str(python).lstrip("/"), filter=keep)
        for name in ("python", "python3", "pip", "pip3"):
            link = tarfile.TarInfo(f"usr/local/bin/{name}")
            link.type = tarfile.SYMTYPE
            link.linkname = str(python / "bin" / ("python3" if name.startswith("python") else "pip3"))
            tar.addfile(link)


def build_offline_base_images(
    docker: Docker,
    public_images: Iterable[str],
    *,
    python_root: Path = DEFAULT_PYTHON_ROOT,
    mirror: str = DEFAULT_MIRROR,
    cache: Path,
    force: bool = False,
    if_missing: bool = False,
) -> List[str]:
    """Build ``ds2ir-offline/<image>`` for each public python image; return the images to use.

    ``if_missing`` first tries the public image itself (present locally or pullable) and
    builds a stand-in only when that fails: what a host that cannot reach a registry needs.
    """
    runner = docker.runner
    built = []
    for public in sorted(set(public_images)):
        name = offline_substitute(public)
        if docker.image_id(name) and not force:
            runner.say(f"offline base image {name} exists (use --force to rebuild)")
            built.append(name)
            continue
        if if_missing and (docker.image_id(public) or runner.succeeds([docker.executable, "pull", public], timeout=BUILD_TIMEOUT)):
            runner.say(f"base image {public} is available; no stand-in needed")
            built.append(public)
            continue
        python = find_python(python_root, python_version_of(public))
        rootfs = ensure_rootfs(runner, cache, mirror)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            image_tar = Path(tmp) / "rootfs.tar"
            runner.say(f"packing {rootfs} + {python} -> {name}")
            if not runner.dry_run:
                _write_image_tar(rootfs, python, image_tar)
            docker.call(
                [docker.executable, "import",
                 "--change", f"ENV PATH={python}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                 "--change", "ENV LANG=C.UTF-8",
                 "--change", 'CMD ["python3"]',
                 image_tar, name],
                step=f"import {name}", timeout=BUILD_TIMEOUT,
            )
        built.append(name)
    return built
