"""TensorRT helpers shared by the engine session, the TensorRT backend and the engine builder.

`tensorrt` / `tensorrt_lean` are imported only by `import_tensorrt`, so importing this module is
free. TensorRT reports most failures only through its logger (a None engine, a False return):
`make_logger` keeps the errors so that our exceptions can quote them (`errors_text`).
A version-compatible plan embeds host code; the runtime refuses it unless
`engine_host_code_allowed` is set, which must be an explicit, trusted-plan opt-in
(https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html).
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import Any

from ingan.errors import InganError
from ingan.extras import missing

_trt_log = logging.getLogger("ingan.tensorrt")


class EngineLoadError(InganError):
    """A plan could not be deserialized or does not follow the ingan graph contract."""


def import_tensorrt(lean: bool) -> ModuleType:
    """`tensorrt` or `tensorrt_lean`; a missing package and a broken install read differently."""
    name = "tensorrt_lean" if lean else "tensorrt"
    try:
        if lean:
            import tensorrt_lean as trt
        else:
            import tensorrt as trt
    except ModuleNotFoundError as exc:
        if exc.name not in (name, None):
            raise InganError(f"'{name}' is installed but cannot be imported: {exc}") from None
        if lean:
            raise missing("tensorrt_lean", "Running a plan on the TensorRT lean runtime") from None
        raise missing("tensorrt", "Running a TensorRT engine") from None
    except (ImportError, OSError) as exc:  # e.g. its CUDA libraries are missing
        raise InganError(f"'{name}' is installed but cannot be imported: {exc}") from None
    return trt


_LOGGER_CLASSES: dict[str, type] = {}


def make_logger(trt: ModuleType) -> Any:
    """A `trt.ILogger` that forwards to `logging` and keeps ERROR/INTERNAL_ERROR messages.

    The kept messages go into our exceptions, because TensorRT reports most failures only
    through its logger (a None engine, a False return). One class per TensorRT module:
    `tensorrt` and `tensorrt_lean` have distinct ILogger base classes.
    """
    cls = _LOGGER_CLASSES.get(trt.__name__)
    if cls is None:

        class _CapturingLogger(trt.ILogger):  # type: ignore[name-defined,misc]
            def __init__(self) -> None:
                # pybind11 trampoline: the base __init__ must be called explicitly
                # (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Logger.html).
                trt.ILogger.__init__(self)
                self.errors: list[str] = []
                self._lock = threading.Lock()

            def log(self, severity: Any, msg: str) -> None:
                # Called from TensorRT's C++ threads through a noexcept interface: an
                # exception escaping here would terminate the process, so swallow all.
                try:
                    if severity == trt.ILogger.INTERNAL_ERROR or severity == trt.ILogger.ERROR:
                        with self._lock:
                            self.errors.append(msg)
                        _trt_log.error("%s", msg)
                    elif severity == trt.ILogger.WARNING:
                        _trt_log.warning("%s", msg)
                    else:  # INFO and VERBOSE: TensorRT is chatty, keep them out of the console
                        _trt_log.debug("%s", msg)
                except Exception:  # noqa: BLE001
                    pass

            def take_errors(self) -> list[str]:
                """The errors logged since the last call, oldest first."""
                with self._lock:
                    errors, self.errors = self.errors, []
                return errors

        cls = _LOGGER_CLASSES[trt.__name__] = _CapturingLogger
    return cls()


def errors_text(logger: Any) -> str:
    """The errors `logger` (from `make_logger`) kept since the last call, for an exception message."""
    errors = logger.take_errors()
    return "; ".join(errors) if errors else "TensorRT logged no error (enable DEBUG logging for details)"


def tensor_profile_values(engine: Any, profile_index: int, name: str) -> list[list[int]]:
    """min/opt/max values of an input shape tensor in one optimization profile.

    Binding quirk: `ICudaEngine.get_tensor_profile_values` names its parameters
    (name, profile_index) but the bound C++ lambda takes (profile_index, name); the 11.4
    lean bindings' docstring reads `(self, name: SupportsInt, profile_index: str)`, i.e.
    an int first. Source: python/src/infer/pyCore.cpp `get_tensor_profile_values` at v10.0.0
    and at 11.1 (https://github.com/NVIDIA/TensorRT/blob/main/python/src/infer/pyCore.cpp).
    Call positionally, and fall back to the documented order in case a release fixes it.
    """
    try:
        values = engine.get_tensor_profile_values(profile_index, name)
    except TypeError:
        values = engine.get_tensor_profile_values(name, profile_index)
    return [[int(v) for v in row] for row in values]


def deserialize_plan(trt: ModuleType, logger: Any, plan: bytes, *, lean: bool,
                     allow_host_code: bool) -> tuple[Any, Any]:
    """(runtime, engine) of a serialized plan (keep the runtime as long as the engine), or
    EngineLoadError quoting TensorRT's errors and the usual causes."""
    runtime = trt.Runtime(logger)
    if allow_host_code:
        # Version-compatible plans carry a lean runtime (host code) inside; executing it
        # is only safe for plans you built or trust.
        runtime.engine_host_code_allowed = True
    engine = runtime.deserialize_cuda_engine(bytes(plan))
    if engine is None:
        hints = [
            "a plan runs only with the TensorRT version and GPU architecture it was built for "
            "(unless built with --version-compatible)"
        ]
        if not allow_host_code:
            hints.append("a version-compatible plan needs allow_host_code=True (trusted plans only)")
        if lean:
            hints.append("the lean runtime loads only version-compatible plans")
        raise EngineLoadError(f"TensorRT could not load the engine: {errors_text(logger)} ({'; '.join(hints)})")
    return runtime, engine
