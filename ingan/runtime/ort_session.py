"""Creating ONNX Runtime sessions with a clear error when the package is missing (no torch)."""

from __future__ import annotations

import os
from typing import Any, Sequence

from ingan.errors import InganError, first_line
from ingan.extras import missing


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise missing("onnxruntime", "Running an .onnx model") from None
    return onnxruntime


def create_session(path: str | os.PathLike[str], providers: Sequence[Any] | None = None, threads: int = 0) -> Any:
    """An InferenceSession; `providers` in priority order (default: CPU only)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    # Fatal only: ORT would print its own (coloured, multi-line) error log before raising; we
    # turn the exception into one line of our own instead.
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(os.fspath(path), sess_options=options,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # ORT raises its own exception types for corrupt/unsupported files
        first = first_line(exc)
        raise InganError(f"ONNX Runtime cannot load '{os.fspath(path)}': {first}") from None
