"""`invoke clean`: remove target directories ds2ir made, and only those."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Sequence

from ds2ir.errors import ConfigError
from ds2ir.paths import check_name

#: written into every target directory a build starts: what `invoke clean` recognises as ds2ir's own
TARGET_MARK = ".ds2ir-target"
#: directories ds2ir keeps at the artifacts root beside the target directories (matrix.py, bench.py, ci.py)
ROOT_DIRECTORIES = ("matrix", "bench", "ci")


def clean(artifacts: Path, targets: Sequence[str], known: Sequence[str], *, dry_run: bool = False) -> List[Path]:
    """Remove the artifact directories of ``targets`` (all of ds2ir's when empty); return what went
    (``dry_run``: what would go, removing nothing).

    Only directories ds2ir recognises as its own (``is_target_dir``) are removed; anything else
    (a name that leaves ``artifacts``, a symlink, an unknown name, a directory ds2ir did not make)
    is refused with a ConfigError before anything is removed. ``known``: the targets file's names.
    """
    if targets:
        chosen = [_chosen_target_dir(artifacts, name, known) for name in dict.fromkeys(targets)]
        doomed = [path for path in chosen if path is not None]
    else:
        entries = sorted(p for p in artifacts.iterdir() if p.is_dir() or p.is_symlink()) if artifacts.is_dir() else []
        doomed = [p for p in entries if is_target_dir(p)]
        foreign = [p.name for p in entries if p not in doomed and not p.name.startswith(".") and p.name not in ROOT_DIRECTORIES]
        if foreign:
            raise ConfigError(
                f"{artifacts} holds {len(foreign)} director{'y' if len(foreign) == 1 else 'ies'} that ds2ir did not make "
                f"({', '.join(foreign[:10])}), so it is not only an artifacts directory; nothing was removed. Name the "
                f"targets to clean with --target, or pass the right --artifacts DIR.")
    for path in doomed if not dry_run else []:
        shutil.rmtree(path)
    return doomed


def is_target_dir(path: Path) -> bool:
    """Whether ``path`` is a target's artifact directory that ds2ir made: a real directory (no symlink)
    with a valid target name holding ds2ir's mark, stamps or manifest."""
    try:
        check_name(path.name)
    except ConfigError:
        return False
    if path.is_symlink() or not path.is_dir():
        return False
    mark = path / TARGET_MARK
    if mark.is_file() and not mark.is_symlink():
        return mark.read_text(encoding="utf-8", errors="replace").strip() == path.name
    return (path / ".stamps").is_dir() or (path / "manifest.json").is_file()


def _chosen_target_dir(artifacts: Path, name: str, known: Sequence[str]) -> Optional[Path]:
    """The directory ``clean --target name`` removes, None when there is nothing, else a ConfigError."""
    check_name(name, what="--target")
    path = artifacts / name
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link, which ds2ir never makes; nothing was removed. Remove the link "
                          f"yourself if you mean to.")
    if not path.exists():
        if name in known:
            return None
        raise ConfigError(f"'{name}' is not a target of the targets file and {artifacts} has no directory of that name; "
                          f"nothing was removed. Known targets: {', '.join(sorted(known))}.")
    if not is_target_dir(path):
        raise ConfigError(f"{path} is not a target directory ds2ir made (no {TARGET_MARK} mark, stamps or manifest); "
                          f"nothing was removed. Remove it yourself if you mean to.")
    return path
