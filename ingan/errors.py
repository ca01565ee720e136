"""User-facing errors.

Anything a user can cause (a bad path, a corrupt file, a size out of range, a missing
optional package) raises an `InganError`. The CLIs print it as one line and exit 1
(`OptionError`, a bad option value: click's usage lines and exit 2); anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class InganError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


class ImageError(InganError):
    """An input image is missing, unreadable or unusable."""


class CheckpointError(InganError):
    """A checkpoint file is missing, corrupt, not ours, or from a newer version."""


class ConfigError(InganError):
    """Options that contradict each other or are out of range."""


class OptionError(ConfigError):
    """An option value that is wrong alone or with another option: the CLIs exit 2 with click's
    usage lines, like a malformed value, rather than 1 as for a problem met while working."""


class OutputPathError(InganError):
    """An output location that cannot be written."""


class DeviceError(InganError):
    """A requested device (e.g. CUDA) is not available."""


class MissingDependencyError(InganError):
    """An optional package is not installed; the message names the pip extra (raised through
    `ingan.extras.missing`, which knows the smallest extra for each package)."""

    def __init__(self, package: str, extra: str, purpose: str, hint: str | None = None) -> None:
        super().__init__(
            f"{purpose} needs the Python package '{package}', which is not installed; "
            f"install it with: {hint or f'pip install {chr(39)}ingan[{extra}]{chr(39)}'}"
        )
        self.package = package
        self.extra = extra


def first_line(exc: BaseException, limit: int | None = 300) -> str:
    """The first line of an exception's message, else its type name: third-party errors can
    be pages long, and a user error is one line. Over `limit` characters it is shortened at
    a word boundary and marked with '...', never cut mid-word without a mark."""
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    if limit is None or len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return (cut if len(cut) > limit // 2 else line[:limit]) + " ..."
