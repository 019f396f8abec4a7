"""Stage images: what each is built from (Dockerfile, lock, constraints, the package without its host
code and, for images installing DeepSpeech's training code, the release's verified source archive),
their content tags, and the base image each is built on."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ds2ir.errors import BaseImageError, CommandError, MissingInputError
from ds2ir.host import digests, upstream
from ds2ir.host.docker import BuildContext, Docker, offline_substitute
from ds2ir.model.targets import ImageSpec

# The package files that go into the images, beside the image's lock (.dockerignore keeps out the rest).
PACKAGE_FILES = ("pyproject.toml", "src")
# Host code never enters an image, nor its content tag: editing it rebuilds no image and reruns no stage
# (.dockerignore keeps it out of the build context too).
HOST_ONLY = "src/ds2ir/host"


def image_inputs(spec: ImageSpec, project: Path) -> List[Path]:
    """The checkout's files an image is built from (its tag hashes them): Dockerfile, lock, constraints, package."""
    constraints = [project / spec.constraints] if spec.constraints else []
    return [project / spec.dockerfile, project / spec.lock, *constraints, *_package_files(project)]


def _package_files(project: Path) -> List[Path]:
    files: List[Path] = []
    for entry in PACKAGE_FILES:
        path = project / entry
        if path.is_file():
            files.append(path)
        else:
            files.extend(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                         and ".egg-info" not in str(p) and not p.is_relative_to(project / HOST_ONLY))
    return sorted(files)


def build_context(spec: ImageSpec, project: Path, source: Optional[Path] = None) -> BuildContext:
    """The checkout as the context, or with a DeepSpeech ``source`` archive a generated one (upstream.py),
    whose SHA-256 is then part of the tag."""
    if spec.source_release and source is None:
        raise MissingInputError(f"Image '{spec.name}' installs release {spec.source_release}'s source archive, "
                                f"which was not given; build it through 'invoke images --target T' or 'invoke build'.")
    files = image_inputs(spec, project)
    if source is None:
        return BuildContext(root=project, dockerfile=spec.dockerfile, files=files)
    return BuildContext(root=project, dockerfile=spec.dockerfile, files=files,
                        tag_inputs=[b"source\0" + digests.file_sha256(source).encode()],
                        directory=lambda: upstream.build_context(spec, project, source, files))


def stage_image_tag(docker: Docker, spec: ImageSpec, base_image: str, project: Path, *,
                    source: Optional[Path] = None) -> str:
    """A tag naming what the image contains: Dockerfile, build args, lock, constraints, package source
    and, for images installing DeepSpeech's source (``source_release``), the source archive's SHA-256."""
    return docker.content_tag(f"ds2ir/{spec.name}", build_context(spec, project, source), platform=spec.platform,
                              build_args=spec.build_args(base_image))


def ensure_stage_image(docker: Docker, spec: ImageSpec, project: Path, *, base_image: Optional[str] = None,
                       source: Optional[Path] = None) -> str:
    """Build the stage image unless an image with the same content tag exists (``source``: see stage_image_tag)."""
    base = base_image or docker.resolve_base_image(spec.base_image)
    tag = stage_image_tag(docker, spec, base, project, source=source)
    if docker.image_id(tag):
        docker.runner.say(f"image {tag} is up to date")
        return tag
    build_stage_image(docker, spec, project, tag, base_image=base, source=source)
    return tag


def build_stage_image(docker: Docker, spec: ImageSpec, project: Path, tag: str, *, base_image: Optional[str] = None,
                      no_cache: bool = False, source: Optional[Path] = None) -> None:
    """Build the stage image as ``tag``; ``no_cache`` rebuilds every layer (what a cold build costs)."""
    base = base_image or docker.resolve_base_image(spec.base_image)
    if not docker.runner.dry_run and not docker.image_id(base):
        base = available_base_image(docker, spec)  # fail before docker build, with the fix
    docker.build_image(build_context(spec, project, source), tag, platform=spec.platform,
                       build_args=spec.build_args(base), no_cache=no_cache)


def available_base_image(docker: Docker, spec: ImageSpec) -> str:
    """The base image to build ``spec`` from: the offline stand-in or the public image, pulled if absent."""
    base = docker.resolve_base_image(spec.base_image)
    if docker.image_id(base):
        return base
    try:
        docker.pull(base, platform=spec.platform)
    except CommandError as exc:
        reason = exc.log_tail.strip().splitlines()[-1:] or [f"exit code {exc.exit_code}"]
        raise BaseImageError(
            f"The base image {base} of image '{spec.name}' ([images.\"{spec.name}\"].base_image of the targets file) "
            f"is not on this host, has no offline stand-in ({offline_substitute(base)}) and cannot be pulled: "
            f"{reason[0]}. Connect this host to its registry, or on an offline host build stand-ins for "
            f"python:X.Y-slim images with 'invoke base-images', or set base_image to an image you have; "
            f"'invoke doctor' checks every base image."
        ) from exc
    return base
