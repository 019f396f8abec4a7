"""The one exception hierarchy of ds2ir.

Every error a user can cause or meet is a :class:`Ds2irError` whose ``str()`` is a
one-paragraph message naming the thing that went wrong and the fix. Tasks catch the
root and print the message; ``--debug`` shows the traceback as well, down to the cause: an
error raised on another one is raised ``from`` it.

    Ds2irError
    ├── ConfigError            the targets file or a command-line option is wrong
    ├── DockerUnavailableError no usable Docker engine or compose
    │   └── BaseImageError     a base image is neither here, nor stood in for, nor pullable
    ├── StorageError           a file cannot be written: full or read-only filesystem, no permission
    ├── MissingInputError      an input file or directory is absent
    ├── CheckpointError        a checkpoint lacks variables or has wrong shapes
    ├── ModelFileError         a .pbmm or .pb is malformed, or is the other of the two
    ├── AudioError             an audio file cannot be turned into features
    ├── DecoderError           beam search cannot run: no ds_ctcdecoder, or not a usable scorer
    ├── ConverterError         the convert image's OpenVINO lacks what the target's converter needs
    ├── VerificationError      the IR does not compute what the TF graph computes
    ├── ReproducibilityError   a rebuild is not bit-identical to the locked hashes
    ├── FetchError             an asset cannot be downloaded, imported or taken from the cache
    │   ├── IntegrityError     a file's size or sha256 differs from assets.lock.toml
    │   ├── UnknownDigestError the lock has no sha256 for an asset
    │   └── NotCachedError     offline, and the cache lacks an asset
    ├── ArchiveError           an archive is unreadable or corrupt
    │   └── UnsafeArchiveError ... or would write outside its destination or expand too far
    └── CommandError           a subprocess exited non-zero
        ├── ContainerError     ... inside a stage container
        └── CommandTimeoutError ... or ran past its time limit and was stopped
"""
from __future__ import annotations

import errno
import shlex
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

__all__ = [
    "ArchiveError",
    "AudioError",
    "BaseImageError",
    "CheckpointError",
    "CommandError",
    "CommandTimeoutError",
    "ConfigError",
    "ContainerError",
    "ConverterError",
    "DecoderError",
    "DockerUnavailableError",
    "Ds2irError",
    "FetchError",
    "IntegrityError",
    "MissingInputError",
    "ModelFileError",
    "NotCachedError",
    "ReproducibilityError",
    "StorageError",
    "UnknownDigestError",
    "UnsafeArchiveError",
    "VerificationError",
]



def quote(argv: Iterable[Union[str, Path]]) -> str:
    """Shell-quoted form of an argument list, for logs and error messages."""
    return " ".join(shlex.quote(str(a)) for a in argv)


class Ds2irError(Exception):
    """Root of every error ds2ir raises on purpose; the message is for the user."""


class ConfigError(Ds2irError):
    """A target, key or value is invalid; names the file and key when known."""

    def __init__(self, message: str, *, file: Optional[str] = None, key: Optional[str] = None):
        where = ""
        if file and key:
            where = f"{file}: [{key}]: "
        elif file:
            where = f"{file}: "
        super().__init__(where + message)
        self.file = file
        self.key = key


class DockerUnavailableError(Ds2irError):
    """Docker (or compose) cannot be used; the message says how to fix it."""


class BaseImageError(DockerUnavailableError):
    """A stage image's base image is not present, has no offline stand-in and cannot be pulled."""


# errno -> (what failed, the fix) for the OS errors a full, read-only or foreign directory gives.
_STORAGE_FAULTS = {
    errno.ENOSPC: ("No space left on device", "Free space on that filesystem ('df -h' shows it) or pass "
                   "--artifacts DIR on a larger one, then build again: it resumes where it stopped."),
    errno.EDQUOT: ("Disk quota exceeded", "Free space within your quota or pass --artifacts DIR elsewhere, then build again."),
    errno.EROFS: ("Read-only file system", "Remount that filesystem read-write or pass --artifacts DIR on a writable one."),
    errno.EACCES: ("Permission denied", "Give this user write access to it (e.g. 'chown -R $(id -u):$(id -g) DIR') "
                   "or pass --artifacts DIR that you own."),
    errno.EPERM: ("Operation not permitted", "Give this user write access to it or pass --artifacts DIR that you own."),
}


class StorageError(Ds2irError):
    """A file cannot be written: the filesystem is full or read-only, or the user may not write there."""

    @classmethod
    def from_os_error(cls, exc: OSError, path: str) -> Optional["StorageError"]:
        """The user's message for failing to write ``path`` (as the user knows it); None for other OS errors."""
        fault = _STORAGE_FAULTS.get(exc.errno or 0)
        if fault is None:
            return None
        reason, fix = fault
        return cls(f"Cannot write {path}: {reason}. {fix} Files under their final names are unchanged: "
                   f"outputs are written to temporary names and renamed only when complete.")


class MissingInputError(Ds2irError):
    """A file or directory a stage needs does not exist."""


class CheckpointError(Ds2irError):
    """A checkpoint does not match the target's architecture."""


class ModelFileError(Ds2irError):
    """A model file (a memory-mapped .pbmm or a frozen .pb) is malformed, or is the other kind."""


class AudioError(Ds2irError):
    """An audio file is unreadable or unsupported."""


class DecoderError(Ds2irError):
    """The CTC beam-search decoder is not in the image, or a scorer file is not a usable DeepSpeech scorer."""


class ConverterError(Ds2irError):
    """The convert image's OpenVINO cannot do what the target's converter needs."""


class VerificationError(Ds2irError):
    """The IR and the TensorFlow graph disagree beyond tolerance."""


class ReproducibilityError(Ds2irError):
    """A rebuild's outputs differ from the hashes locked in outputs.lock.json."""


class CommandError(Ds2irError):
    """A command exited non-zero; carries what is needed to understand why."""

    def __init__(self, *, step: str, command: Sequence[str], exit_code: int, log_tail: str):
        self.step = step
        self.command = list(command)
        self.exit_code = exit_code
        self.log_tail = log_tail
        super().__init__(self._describe())

    def _describe(self) -> str:
        tail = self.log_tail.rstrip() or "(no output)"
        return (
            f"Step '{self.step}' failed with exit code {self.exit_code}.\n"
            f"  command: {quote(self.command)}\n"
            f"  last lines of its output:\n"
            + "\n".join("    " + line for line in tail.splitlines())
        )


class ContainerError(CommandError):
    """A stage container exited non-zero."""

    def __init__(self, *, step: str, command: Sequence[str], exit_code: int, log_tail: str, image: str):
        self.image = image
        super().__init__(step=step, command=command, exit_code=exit_code, log_tail=log_tail)

    def _describe(self) -> str:
        head, _, rest = super()._describe().partition("\n")
        if self.exit_code == 137:  # 128 + SIGKILL
            head += (" The container was killed (docker kill, docker rm -f, or out of memory); "
                     "run the build again: it reruns the interrupted stage.")
        return f"{head}\n  image: {self.image}\n{rest}"


class CommandTimeoutError(CommandError):
    """A command ran past its time limit and was killed; ``fix`` says what to do about it."""

    def __init__(self, *, step: str, command: Sequence[str], timeout: float, log_tail: str, fix: str = ""):
        self.timeout = timeout
        self.fix = fix
        super().__init__(step=step, command=command, exit_code=-9, log_tail=log_tail)

    def _describe(self) -> str:
        _, _, rest = super()._describe().partition("\n")
        head = f"Step '{self.step}' did not finish within {self.timeout:g} s and was stopped. {self.fix}".rstrip()
        return f"{head}\n{rest}"


class FetchError(Ds2irError):
    """An asset cannot be downloaded, imported or taken from the cache."""


class IntegrityError(FetchError):
    """A file's size or SHA-256 is not what the lock file records for its URL."""

    def __init__(self, *, file: str, url: str, check: str, expected: str, actual: str, fix: str):
        self.file = file
        self.url = url
        self.check = check
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{file} is not the asset {url}: its {check} is {actual}, but the lock expects {expected}. {fix}"
        )


class UnknownDigestError(FetchError):
    """The lock has no SHA-256 for an asset, so no copy of it can be verified."""


class NotCachedError(FetchError):
    """Offline, and the cache does not hold the asset."""


class ArchiveError(Ds2irError):
    """An archive cannot be read or extracted."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would land outside the destination, or the archive expands too far."""

    def __init__(self, *, archive: str, member: str, reason: str, fix: str):
        self.archive = archive
        self.member = member
        self.reason = reason
        super().__init__(f"Refusing to extract {archive}: member '{member}' {reason}. Nothing was extracted. {fix}")
