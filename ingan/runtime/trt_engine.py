"""Run a serialized TensorRT engine (plan) that follows docs/onnx-contract.md.

Low level on purpose: numpy in, numpy out, no torch. `tensorrt` (or `tensorrt_lean`) and
cuda-python are imported only when a session is created, so importing this module is free.

TensorRT facts this code relies on (details and sources in shared/notes/tensorrt.md):

- `size` is a *shape tensor*: TensorRT reads its values from HOST memory that must stay
  alive and unchanged until the enqueue returns (NvInferRuntime.h `setTensorAddress`,
  https://github.com/NVIDIA/TensorRT/blob/main/include/NvInferRuntime.h).
- `execute_async_v3` on the default stream adds device-wide syncs, so we use our own stream
  (docstring of `IExecutionContext.execute_async_v3` in the 11.4 bindings).
- A version-compatible plan embeds host code; the runtime refuses it unless
  `engine_host_code_allowed` is set, which must be an explicit, trusted-plan opt-in
  (https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html).
- Deserializing on a machine without a usable GPU crashes the process (segfault seen with
  tensorrt_lean 11.4.0.106 on a driver-less host), so the GPU is checked first.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from types import ModuleType, TracebackType
from typing import Any, Sequence

import numpy as np

from ingan.errors import ConfigError, DeviceError, InganError, MissingDependencyError

log = logging.getLogger(__name__)
_trt_log = logging.getLogger("ingan.tensorrt")

SIZE_INPUT = "size"
IMAGE_INPUT = "image"
HOMOGRAPHY_INPUT = "homography"
OUTPUT_NAME = "output"
_KNOWN_INPUTS = (SIZE_INPUT, IMAGE_INPUT, HOMOGRAPHY_INPUT)
_REBUILD_HINT = "rebuild the engine with ingan-export --min-size/--max-size"


class CudaError(InganError):
    """A CUDA runtime call failed (out of memory, driver problem, ...)."""


class EngineLoadError(InganError):
    """A plan could not be deserialized or does not follow the ingan graph contract."""


# --------------------------------------------------------------------------- CUDA helpers


def import_cudart() -> ModuleType | None:
    """The CUDA runtime bindings of cuda-python, or None when cuda-python is missing.

    cuda-bindings 13 removed the old `cuda.cudart` module; 12.x (before 12.6) only has it.
    https://nvidia.github.io/cuda-python/cuda-bindings/latest/release/13.0.0-notes.html
    """
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # cuda-python 12.x
        except ImportError:
            return None
    return cudart


def _error_name(err: Any) -> str:
    return str(getattr(err, "name", err))


def _check(result: Any, what: str) -> Any:
    """Unpack cuda-python's `(err, *values)` tuple; raise CudaError naming the error.

    Returns None, the single value, or a tuple of values.
    """
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:  # cudaSuccess == 0; cuda-bindings enums are int subclasses
        raise CudaError(f"CUDA call {what} failed: {_error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def cuda_device_status() -> tuple[bool, str]:
    """(True, "") if cuda-python sees at least one GPU, else (False, why). Never imports torch."""
    cudart = import_cudart()
    if cudart is None:
        return False, "cuda-python is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0:
        return False, f"no CUDA GPU found (cudaGetDeviceCount: {_error_name(err)})"
    if count < 1:
        return False, "no CUDA GPU found (cudaGetDeviceCount: 0 devices)"
    return True, ""


def cuda_device_info() -> tuple[str, str]:
    """(name, "major.minor") of the current CUDA device: what a plan is tied to."""
    cudart = import_cudart()
    if cudart is None:
        raise MissingDependencyError("cuda-python", "gpu", "Querying the GPU")
    device = _check(cudart.cudaGetDevice(), "cudaGetDevice")
    props = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(name), f"{props.major}.{props.minor}"


def _stream_handle(stream: Any) -> int:
    """The integer handle TensorRT wants; `int(stream)` is deprecated in cuda-bindings 13."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(stream)
    return int(get_cuda_native_handle(stream))


# --------------------------------------------------------------------------- TensorRT helpers

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


def _errors_text(logger: Any) -> str:
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


def check_size_in_range(
    size: Sequence[int], size_min: Sequence[int], size_max: Sequence[int]
) -> tuple[int, int]:
    """Validate a requested (height, width) against an engine's range; ConfigError if outside."""
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ConfigError(f"size must be (height, width) integers, got {size!r}") from None
    if height < 1 or width < 1:
        raise ConfigError(f"size {height}x{width} must be positive (height x width)")
    if not (size_min[0] <= height <= size_max[0] and size_min[1] <= width <= size_max[1]):
        raise ConfigError(
            f"size {height}x{width} is outside this engine's range "
            f"{size_min[0]}x{size_min[1]} .. {size_max[0]}x{size_max[1]} (height x width); "
            f"{_REBUILD_HINT}"
        )
    return height, width


def _import_trt(lean: bool) -> ModuleType:
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
            raise MissingDependencyError(
                "tensorrt-lean-cu13", "gpu", "Running a plan on the TensorRT lean runtime"
            ) from None
        raise MissingDependencyError("tensorrt", "gpu", "Running a TensorRT engine") from None
    except (ImportError, OSError) as exc:  # e.g. its CUDA libraries are missing
        raise InganError(f"'{name}' is installed but cannot be imported: {exc}") from None
    return trt


# --------------------------------------------------------------------------- the session


class TrtEngineSession:
    """One deserialized engine + execution context + stream + buffers sized for the profile max.

    Not thread-safe for concurrent `run` calls (one context, one stream); a lock serializes
    them. Use as a context manager or call `close()`.
    """

    def __init__(self, plan: bytes, *, lean: bool = False, allow_host_code: bool = False) -> None:
        # Everything close() touches exists before anything can fail.
        self._lock = threading.RLock()
        self._closed = False
        self._cudart: Any = None
        self._stream: Any = None
        self._stream_int = 0
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        try:
            self._open(plan, lean=lean, allow_host_code=allow_host_code)
        except BaseException:
            self._release(raise_errors=False)
            raise

    # ---------------------------------------------------------------- setup

    def _open(self, plan: bytes, *, lean: bool, allow_host_code: bool) -> None:
        trt = _import_trt(lean)
        cudart = import_cudart()
        if cudart is None:
            raise MissingDependencyError("cuda-python", "gpu", "Running a TensorRT engine")
        self._cudart = cudart
        ok, reason = cuda_device_status()
        if not ok:  # checked first: deserializing without a GPU segfaults
            raise DeviceError(f"cannot run a TensorRT engine: {reason}")

        self._logger = make_logger(trt)
        runtime = trt.Runtime(self._logger)
        self._runtime = runtime
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
            raise EngineLoadError(
                f"TensorRT could not load the engine: {_errors_text(self._logger)} ({'; '.join(hints)})"
            )
        self._engine = engine

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        unknown = [n for n in self._inputs if n not in _KNOWN_INPUTS]
        if SIZE_INPUT not in self._inputs or unknown or outputs != [OUTPUT_NAME]:
            raise EngineLoadError(
                f"engine inputs {list(self._inputs)} / outputs {outputs} do not follow the ingan graph "
                f"contract (inputs size[, image][, homography]; output 'output'); rebuild it from an "
                f"ingan-export ONNX file"
            )
        if not engine.is_shape_inference_io(SIZE_INPUT):
            raise EngineLoadError(
                "the engine's 'size' input is not a shape tensor (expected per docs/onnx-contract.md); "
                "rebuild it from an ingan-export ONNX file"
            )
        self._size_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(SIZE_INPUT)))
        profile = tensor_profile_values(engine, 0, SIZE_INPUT)
        if len(profile) != 3 or any(len(row) != 2 for row in profile):
            raise EngineLoadError(f"the engine has no usable optimization profile for 'size' ({profile})")
        self._size_min = (profile[0][0], profile[0][1])
        self._size_max = (profile[2][0], profile[2][1])
        # Host memory TensorRT reads the shape values from; it lives as long as the session.
        self._size_host = np.zeros(2, dtype=self._size_dtype)

        self._input_dtypes: dict[str, np.dtype] = {}
        self._input_ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for name in self._inputs:
            if name == SIZE_INPUT:
                continue
            self._input_dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            static = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in static):
                shapes = engine.get_tensor_profile_shape(name, 0)
                self._input_ranges[name] = (tuple(shapes[0]), tuple(shapes[2]))
            else:
                self._input_ranges[name] = (static, static)
        self._output_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(OUTPUT_NAME)))

        context = engine.create_execution_context()
        if context is None:
            raise EngineLoadError(f"TensorRT could not create an execution context: {_errors_text(self._logger)}")
        self._context = context
        self._stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._stream_int = _stream_handle(self._stream)

        # Size every buffer once, at the profile maximum (the way TensorRT's samples do:
        # samples/python/common_runtime.py allocate_buffers), then reuse it for every run.
        max_shapes = {name: hi for name, (_lo, hi) in self._input_ranges.items()}
        output_shape = self._set_shapes(self._size_max, max_shapes)
        self._bufs: dict[str, tuple[int, int, np.ndarray]] = {}
        for name, shape in max_shapes.items():
            self._bufs[name] = self._alloc(name, shape, self._input_dtypes[name])
        self._bufs[OUTPUT_NAME] = self._alloc(OUTPUT_NAME, output_shape, self._output_dtype)
        for name, (device_ptr, _nbytes, _host) in self._bufs.items():
            if not context.set_tensor_address(name, device_ptr):
                raise EngineLoadError(f"TensorRT refused the buffer for '{name}': {_errors_text(self._logger)}")
        log.debug(
            "TensorRT %s engine loaded: inputs %s, size range %s..%s, output %s",
            trt.__version__, self._inputs, self._size_min, self._size_max, self._output_dtype,
        )

    def _alloc(self, name: str, shape: Sequence[int], dtype: np.dtype) -> tuple[int, int, np.ndarray]:
        """Device buffer + pinned host staging buffer (pinned: truly async copies)."""
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
        device_ptr = _check(self._cudart.cudaMalloc(nbytes), f"cudaMalloc({name}, {nbytes} bytes)")
        self._device_ptrs.append(device_ptr)
        host_ptr = _check(self._cudart.cudaMallocHost(nbytes), f"cudaMallocHost({name}, {nbytes} bytes)")
        self._host_ptrs.append(host_ptr)
        host = np.frombuffer((ctypes.c_ubyte * nbytes).from_address(host_ptr), dtype=np.uint8)
        return device_ptr, nbytes, host

    def _set_shapes(self, size: tuple[int, int], shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
        """Set the size values and input shapes; return the concrete output shape."""
        context = self._context
        self._size_host[0], self._size_host[1] = size
        # Shape-tensor input: a HOST pointer (NvInferRuntime.h setTensorAddress).
        if not context.set_tensor_address(SIZE_INPUT, self._size_host.ctypes.data):
            raise InganError(f"TensorRT refused the 'size' address: {_errors_text(self._logger)}")
        for name, shape in shapes.items():
            if not context.set_input_shape(name, tuple(int(d) for d in shape)):
                raise ConfigError(
                    f"TensorRT rejected shape {tuple(shape)} for '{name}': {_errors_text(self._logger)}"
                )
        missing = context.infer_shapes()
        if missing:
            raise InganError(f"TensorRT could not infer the output shape; unspecified inputs: {list(missing)}")
        output_shape = tuple(int(d) for d in context.get_tensor_shape(OUTPUT_NAME))
        if any(d < 0 for d in output_shape):
            raise InganError(f"TensorRT left the output shape unresolved: {output_shape}")
        return output_shape

    # ---------------------------------------------------------------- properties

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._inputs

    @property
    def output_name(self) -> str:
        return OUTPUT_NAME

    @property
    def has_image_input(self) -> bool:
        return IMAGE_INPUT in self._inputs

    @property
    def has_homography(self) -> bool:
        return HOMOGRAPHY_INPUT in self._inputs

    @property
    def size_range(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((min_h, min_w), (max_h, max_w)) from optimization profile 0."""
        return self._size_min, self._size_max

    # ---------------------------------------------------------------- inference

    def _prepare(
        self, size: tuple[int, int], image: np.ndarray | None, homography: np.ndarray | None
    ) -> tuple[tuple[int, int], dict[str, np.ndarray]]:
        """All user-input checks: ConfigError before any GPU work."""
        hw = check_size_in_range(size, self._size_min, self._size_max)
        arrays: dict[str, np.ndarray] = {}
        for name, value in ((IMAGE_INPUT, image), (HOMOGRAPHY_INPUT, homography)):
            if name not in self._inputs:
                if value is not None:
                    raise ConfigError(f"this engine has no '{name}' input; do not pass {name}")
                continue
            if value is None:
                raise ConfigError(f"this engine needs the '{name}' input")
            array = np.ascontiguousarray(value, dtype=self._input_dtypes[name])
            lo, hi = self._input_ranges[name]
            if array.ndim != len(lo) or any(not (a <= d <= b) for d, a, b in zip(array.shape, lo, hi)):
                raise ConfigError(
                    f"{name} shape {tuple(array.shape)} is outside this engine's range {lo} .. {hi}; "
                    f"rebuild the engine with a wider profile"
                )
            arrays[name] = array
        if IMAGE_INPUT in arrays and HOMOGRAPHY_INPUT in arrays:
            if arrays[IMAGE_INPUT].shape[0] != arrays[HOMOGRAPHY_INPUT].shape[0]:
                raise ConfigError(
                    f"image batch {arrays[IMAGE_INPUT].shape[0]} and homography batch "
                    f"{arrays[HOMOGRAPHY_INPUT].shape[0]} differ"
                )
        return hw, arrays

    def run(
        self,
        size: tuple[int, int],
        image: np.ndarray | None = None,
        homography: np.ndarray | None = None,
    ) -> np.ndarray:
        """Generate one output of `size` = (height, width).

        Returns a new array: uint8 [N, H, W, 3] or float32 [N, 3, H, W] (the engine decides).
        """
        hw, arrays = self._prepare(size, image, homography)
        with self._lock:
            if self._closed:
                raise InganError("this TensorRT session is closed")
            cudart = self._cudart
            output_shape = self._set_shapes(hw, {name: a.shape for name, a in arrays.items()})
            out_ptr, out_capacity, out_host = self._bufs[OUTPUT_NAME]
            out_nbytes = int(np.prod(output_shape, dtype=np.int64)) * self._output_dtype.itemsize
            if out_nbytes > out_capacity:  # cannot happen for a graph whose output grows with size
                raise InganError(
                    f"output {output_shape} needs {out_nbytes} bytes but {out_capacity} were sized "
                    f"from the profile maximum"
                )
            for name, array in arrays.items():
                device_ptr, _capacity, host = self._bufs[name]
                host[: array.nbytes] = array.reshape(-1).view(np.uint8)
                _check(
                    cudart.cudaMemcpyAsync(
                        device_ptr, host.ctypes.data, array.nbytes,
                        cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream,
                    ),
                    f"cudaMemcpyAsync({name} to device)",
                )
            if not self._context.execute_async_v3(self._stream_int):
                # Drain the stream before reporting so nothing is in flight on our buffers.
                cudart.cudaStreamSynchronize(self._stream)
                raise InganError(f"TensorRT inference failed: {_errors_text(self._logger)}")
            _check(
                cudart.cudaMemcpyAsync(
                    out_host.ctypes.data, out_ptr, out_nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream,
                ),
                "cudaMemcpyAsync(output to host)",
            )
            _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            # Copy out of the pinned buffer: the next run overwrites it.
            return out_host[:out_nbytes].view(self._output_dtype).reshape(output_shape).copy()

    # ---------------------------------------------------------------- teardown

    def close(self) -> None:
        """Free the buffers, stream, context, engine and runtime; safe to call twice."""
        self._release(raise_errors=True)

    def _release(self, *, raise_errors: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            errors: list[str] = []
            cudart = self._cudart

            def attempt(result: Any, what: str) -> None:
                try:
                    _check(result, what)
                except CudaError as exc:
                    errors.append(str(exc))

            if cudart is not None and self._stream is not None:
                attempt(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            # TensorRT objects first (context before engine before runtime), then our memory.
            self._context = None
            self._engine = None
            self._runtime = None
            self.__dict__.pop("_bufs", None)  # drop numpy views before their memory goes
            if cudart is not None:
                while self._device_ptrs:
                    attempt(cudart.cudaFree(self._device_ptrs.pop()), "cudaFree")
                while self._host_ptrs:
                    attempt(cudart.cudaFreeHost(self._host_ptrs.pop()), "cudaFreeHost")
                if self._stream is not None:
                    attempt(cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None
            if errors and raise_errors:
                raise CudaError("; ".join(errors))

    def __enter__(self) -> TrtEngineSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Do not mask the original exception with a teardown error.
        self._release(raise_errors=exc is None)

    def __del__(self) -> None:
        try:
            self._release(raise_errors=False)
        except Exception:  # noqa: BLE001 - interpreter shutdown: modules may be gone
            pass
