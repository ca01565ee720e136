"""Atomic file writes: a reader never sees a half-written output file."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Iterator

from ingan.errors import InganError, OutputPathError


def ensure_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and parents) as a directory, or explain why it cannot be."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise OutputPathError(
            f"output folder '{directory}' exists and is not a folder; pass a different --out"
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create output folder '{directory}': {exc.strerror or exc}; pass a writable --out"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise OutputPathError(f"output folder '{directory}' is not writable; pass a writable --out")
    return directory


# Temporary files are named `.{final name}.{8 random characters}.tmp` (tempfile.mkstemp with our
# prefix and suffix). A hard kill (kill -9, power loss) leaves them behind; the next atomic write
# into the same folder removes ours once they are this old. A live writer keeps its file for
# seconds to minutes (an engine build: tens of minutes), so six hours cannot catch one.
STALE_TEMP_SECONDS = 6 * 3600
_OUR_TEMP = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def remove_stale_temps(folder: str | os.PathLike[str], older_than: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete our own temporary files in `folder` (not its sub-folders) older than `older_than`
    seconds; returns what was removed. Files of other names are never touched."""
    removed: list[Path] = []
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not _OUR_TEMP.match(entry.name):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only on success.

    The temporary file lives in the same folder so the rename is atomic on POSIX and
    Windows. On any exception (Ctrl-C included) the temporary file is removed and
    `final` is left as it was; temporary files a hard kill left in that folder are removed
    once stale (`remove_stale_temps`).
    """
    final_path = Path(final)
    parent = final_path.parent if str(final_path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"cannot write '{final_path}': '{parent}' is not a folder")
    if not parent.exists():
        raise OutputPathError(f"cannot write '{final_path}': folder '{parent}' does not exist")
    if final_path.is_dir():
        raise OutputPathError(f"cannot write '{final_path}': a folder of that name exists")
    remove_stale_temps(parent)
    try:
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final_path.name}.", suffix=".tmp", dir=parent
        )
    except OSError as exc:
        raise OutputPathError(
            f"cannot write into '{parent}': {exc.strerror or exc}; choose a writable location"
        ) from None
    os.close(fd)
    tmp_path = Path(tmp_name)
    # mkstemp creates 0600; give the final file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, final_path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def is_plain_stem(name: str) -> bool:
    """A file name without folders or a leading dot (output-name options: --name)."""
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".")


def is_plain_file_name(name: str) -> bool:
    """A name that stays inside the folder it is joined to: no separators, not '.' or '..'
    (file names read from user files, e.g. a sidecar's source checkpoint)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\0" not in name


def safe_folder_name(stem: str, fallback: str = "image") -> str:
    """`stem` made safe as one folder name for a default output path: separators and control
    characters become '_', and names that are only dots ('..') or empty become `fallback`."""
    cleaned = "".join("_" if c in "/\\" or ord(c) < 32 else c for c in stem).strip()
    return cleaned if cleaned.strip(".") else fallback


MODEL_FILES = "a .plan, .onnx or .pt model file"
IMAGE_FILES = "an image file (PNG, JPEG, WebP, TIFF, BMP, ...)"


def existing_file(path: str | os.PathLike[str], what: str, expect: str,
                  error: type[InganError] = InganError) -> Path:
    """`path` if it is an existing file, else the one-line error every command words alike:
    "<what> 'p' does not exist; check the path" / "<what> 'p' is not a file (a folder); pass <expect>".

    Cheap (no heavy import): CLIs call it before loading anything, so a wrong path is
    reported at once.
    """
    p = Path(path)
    if not p.exists():
        raise error(f"{what} '{p}' does not exist; check the path")
    if not p.is_file():
        kind = "a folder" if p.is_dir() else "not a regular file"
        raise error(f"{what} '{p}' is not a file ({kind}); pass {expect}")
    return p
def split_file(path: str | os.PathLike[str], out_dir: str | os.PathLike[str], part_bytes: int) -> list[str]:
    """Copy `path` into `out_dir` as `<name>.part00`, `.part01`, ... of at most `part_bytes`
    each (for copy-back limits; `cat name.part* > name` re-assembles it); their names."""
    data = Path(path).read_bytes()
    names = []
    for start in range(0, len(data), part_bytes):
        name = f"{Path(path).name}.part{start // part_bytes:02d}"
        (Path(out_dir) / name).write_bytes(data[start : start + part_bytes])
        names.append(name)
    return names
