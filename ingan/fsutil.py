"""Atomic file writes: a reader never sees a half-written output file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from ingan.errors import OutputPathError


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


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it over `final` only on success.

    The temporary file lives in the same folder so the rename is atomic on POSIX and
    Windows. On any exception (Ctrl-C included) the temporary file is removed and
    `final` is left as it was.
    """
    final_path = Path(final)
    parent = final_path.parent if str(final_path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputPathError(f"cannot write '{final_path}': '{parent}' is not a folder")
    if not parent.exists():
        raise OutputPathError(f"cannot write '{final_path}': folder '{parent}' does not exist")
    if final_path.is_dir():
        raise OutputPathError(f"cannot write '{final_path}': a folder of that name exists")
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
