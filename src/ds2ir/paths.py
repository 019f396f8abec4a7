"""The names and paths ds2ir accepts: every path it derives from a name stays under its root.

Target and image names become directory names, container names and image tags, so they
follow one strict grammar; a path built from a name is checked to stay under the root it
was built from; an input file is checked with ``stat`` (which never blocks) before it is
opened, so a directory or a FIFO is refused instead of raising or hanging.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from ds2ir.errors import ConfigError, Ds2irError, MissingInputError

__all__ = ["IMAGE_NAME", "NAME", "check_image_name", "check_name", "check_relative_path", "check_text",
           "path_under", "regular_file"]

#: target names: directory names under artifacts/, so no separators, no '..', no spaces or control characters
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: image names: also the repository part of a Docker tag (ds2ir/<name>), which must be lower case
IMAGE_NAME = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+){0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(name: str, *, what: str = "target name", file: Optional[str] = None, key: Optional[str] = None) -> str:
    """``name`` if it is a valid target name, else a ConfigError naming the grammar."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{what} {name!r} is not allowed: use letters, digits, '.', '_' and '-', starting with a "
                          f"letter or digit, without '..' (at most 128 characters)", file=file, key=key)
    return name


def check_image_name(name: str, *, file: Optional[str] = None, key: Optional[str] = None) -> str:
    """``name`` if it can name an image (and the repository of its Docker tag), else a ConfigError."""
    if not isinstance(name, str) or not IMAGE_NAME.fullmatch(name):
        raise ConfigError(f"image name {name!r} is not allowed: use lower-case letters and digits separated by "
                          f"single '.', '_' or '-' (a Docker repository name)", file=file, key=key)
    return name


def check_text(value: str, *, what: str, file: Optional[str] = None, key: Optional[str] = None) -> str:
    """``value`` if it holds no newline or other control character (it goes into .env files and command lines)."""
    if _CONTROL.search(value):
        raise ConfigError(f"{what} {value!r} contains a newline or another control character; remove it",
                          file=file, key=key)
    return value


def check_relative_path(value: str, *, file: Optional[str] = None, key: Optional[str] = None,
                        suffix: Optional[str] = None) -> str:
    """``value`` if it is a relative path inside the checkout (no absolute path, '..' or backslash)."""
    parts = PurePosixPath(value).parts
    if (not value or value.startswith("/") or ".." in parts or "\\" in value or _CONTROL.search(value)
            or (suffix is not None and not value.endswith(suffix))):
        kind = f"a {suffix} file" if suffix else "a file"
        raise ConfigError(f"must be a relative path to {kind} inside the checkout, got {value!r}", file=file, key=key)
    return value


def path_under(root: Path, *names: str) -> Path:
    """``root / names...``, refused unless it stays under ``root`` (lexically, before any symlink)."""
    path = root.joinpath(*names)
    base, inside = os.path.normpath(str(root)), os.path.normpath(str(path))
    try:
        common = os.path.commonpath([base, inside])
    except ValueError:  # one absolute, one relative: a name was an absolute path
        common = ""
    if common != base or inside == base:
        raise ConfigError(f"refusing the path {path}: it leaves {root}. Names must not contain '/' or '..'.")
    return path


def regular_file(path: Path, what: str, *, error: Callable[[str], Ds2irError] = MissingInputError) -> os.stat_result:
    """The ``stat`` of ``path`` if it is a regular file (after symlinks); ``error`` otherwise.

    ``stat`` never blocks, unlike opening a FIFO, which waits for a writer forever.
    """
    try:
        info = path.stat()
    except FileNotFoundError as exc:
        raise MissingInputError(f"The {what} {path} does not exist.") from exc
    except OSError as exc:
        raise error(f"The {what} {path} cannot be read ({exc.strerror or exc}).") from exc
    if not stat.S_ISREG(info.st_mode):
        raise error(f"The {what} {path} is {_kind(info.st_mode)}, not a regular file; give the path of a file.")
    return info


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "a special file"
