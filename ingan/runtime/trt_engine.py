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
- Optional CUDA graphs (`cuda_graphs=N`): see `TrtEngineSession` and `_run_and_capture` for the
  recipe, the sources, and why every cached graph gets its own execution context.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, Sequence

import numpy as np

from ingan.errors import ConfigError, DeviceError, InganError
from ingan.extras import missing

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


def check_cuda(result: Any, what: str) -> Any:
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
        raise missing("cuda.bindings", "Querying the GPU")
    device = check_cuda(cudart.cudaGetDevice(), "cudaGetDevice")
    props = check_cuda(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
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


def _is_null(handle: Any) -> bool:
    """True for None or a NULL cuda-python handle (cudaGraph_t, cudaGraphExec_t, ...)."""
    if handle is None:
        return True
    try:
        return _stream_handle(handle) == 0  # get_cuda_native_handle works for any handle type
    except (TypeError, ValueError):
        return False


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
            raise missing("tensorrt_lean", "Running a plan on the TensorRT lean runtime") from None
        raise missing("tensorrt", "Running a TensorRT engine") from None
    except (ImportError, OSError) as exc:  # e.g. its CUDA libraries are missing
        raise InganError(f"'{name}' is installed but cannot be imported: {exc}") from None
    return trt


# --------------------------------------------------------------------------- the session


def _shapes_of(arrays: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(int(d) for d in a.shape) for name, a in arrays.items()}


@dataclass
class _CudaGraph:
    """One captured enqueue: its own execution context, graph, and pinned `size` values."""

    context: Any
    graph: Any
    graph_exec: Any
    size_ptr: int  # pinned host memory holding this key's (height, width); never rewritten
    output_shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)  # holds numpy arrays: compared by identity
class PreparedRequest:
    """A checked request from `TrtEngineSession.prepare`; `enqueue` it as often as needed."""

    size: tuple[int, int]  # (height, width)
    inputs: dict[str, np.ndarray]  # the device inputs (engine dtypes, contiguous); empty: only `size`
    key: Any  # the CUDA-graph cache key: ((height, width), ((input, shape), ...))
    # What the session will do for it, as of `prepare`: "off" (no graph cache: plain enqueue),
    # "cached" (launch the cached graph), "capture" (the next enqueue captures one) or
    # "failed" (this key could not be captured: plain enqueue).
    cuda_graph: str


@dataclass(frozen=True)
class EnqueuedRequest:
    """What `TrtEngineSession.enqueue` put on the stream; `fetch` it before the next enqueue."""

    output_shape: tuple[int, ...]
    enqueue_s: float  # host time of the execute_async_v3 or cudaGraphLaunch call
    ticket: int  # which enqueue this was (a later one overwrites the pinned output)


class TrtEngineSession:
    """One deserialized engine + execution context + stream + buffers sized for the profile max.

    Not thread-safe for concurrent `run` calls (one context, one stream); a lock serializes
    them. Use as a context manager or call `close()`.

    `cuda_graphs=N` (N > 0) keeps an LRU of up to N CUDA graphs, one per key
    (size, input shapes). The first request for a key runs normally on a fresh execution
    context and captures that context's enqueue; later requests for the key copy their inputs
    into the same fixed device buffers and replay the graph with `cudaGraphLaunch`. A graph
    replays the kernels, tensor addresses and shape-tensor values of its capture: TensorRT
    reads `size` from host memory on the CPU inside the enqueue call, so the values are baked
    into the graph and the key must (and does) contain the size. Engines whose enqueue cannot
    be captured fall back to plain execution for that key (logged once). 0 (the default)
    never touches CUDA graphs.

    `run` is `prepare` + `enqueue` + `fetch`. Callers that time the parts (ingan.bench) use
    them directly: `prepare` checks the inputs and sets the shapes once, `enqueue` copies the
    inputs in, enqueues (or launches the graph) and copies the output out on `stream`,
    optionally recording CUDA events between those steps, and `fetch` waits for the stream and
    returns the output.
    """

    def __init__(self, plan: bytes, *, lean: bool = False, allow_host_code: bool = False,
                 cuda_graphs: int = 0) -> None:
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
        self._main_shapes: tuple[Any, tuple[int, ...]] | None = None  # (key, output shape) set on _context
        self._tickets = 0  # enqueues so far
        self._graphs: OrderedDict[Any, _CudaGraph] = OrderedDict()
        self._graph_failed: OrderedDict[Any, None] = OrderedDict()
        self._graph_failure_logged = False
        self._graph_counts = {"captures": 0, "launches": 0, "evictions": 0, "failures": 0}
        self._scratch: tuple[int, int] | None = None  # (device ptr, bytes) shared by graph contexts
        if isinstance(cuda_graphs, bool) or not isinstance(cuda_graphs, int) or cuda_graphs < 0:
            raise ConfigError(f"cuda_graphs must be a whole number >= 0 (0 = off), got {cuda_graphs!r}")
        self._graph_capacity = cuda_graphs
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
            raise missing("cuda.bindings", "Running a TensorRT engine")
        self._cudart = cudart
        ok, reason = cuda_device_status()
        if not ok:  # checked first: deserializing without a GPU segfaults
            raise DeviceError(f"cannot run a TensorRT engine: {reason}")

        self._trt = trt
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
        # Host memory TensorRT reads the shape values from: allocated once (pinned), lives as
        # long as the session, rewritten in place before each enqueue.
        _ptr, self._size_host = self._pinned(2 * self._size_dtype.itemsize, "size", self._size_dtype)

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
        self._stream = check_cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
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
        device_ptr = check_cuda(self._cudart.cudaMalloc(nbytes), f"cudaMalloc({name}, {nbytes} bytes)")
        self._device_ptrs.append(device_ptr)
        _host_ptr, host = self._pinned(nbytes, name)
        return device_ptr, nbytes, host

    def _pinned(self, nbytes: int, name: str, dtype: np.dtype | None = None,
                owned: bool = True) -> tuple[int, np.ndarray]:
        """Pinned host memory as a numpy view; freed by close() when `owned`."""
        host_ptr = check_cuda(self._cudart.cudaMallocHost(nbytes), f"cudaMallocHost({name}, {nbytes} bytes)")
        if owned:
            self._host_ptrs.append(host_ptr)
        view = np.frombuffer((ctypes.c_ubyte * nbytes).from_address(host_ptr), dtype=np.uint8)
        return host_ptr, (view if dtype is None else view.view(dtype))

    def _set_shapes(self, size: tuple[int, int], shapes: dict[str, tuple[int, ...]],
                    context: Any = None, size_host: np.ndarray | None = None) -> tuple[int, ...]:
        """Set the size values and input shapes (main context unless given); return the output shape."""
        context = self._context if context is None else context
        size_host = self._size_host if size_host is None else size_host
        size_host[0], size_host[1] = size
        # Shape-tensor input: a HOST pointer (NvInferRuntime.h setTensorAddress).
        if not context.set_tensor_address(SIZE_INPUT, size_host.ctypes.data):
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
    def stream(self) -> Any:
        """The session's CUDA stream (cudaStream_t): every copy, enqueue and graph launch runs on it."""
        return self._stream

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

    @property
    def cuda_graph_keys(self) -> tuple[Any, ...]:
        """Cached graph keys, least recently used first: ((h, w), ((input, shape), ...))."""
        with self._lock:
            return tuple(self._graphs)

    @property
    def cuda_graph_counts(self) -> dict[str, int]:
        """How often graphs were captured, launched, evicted, or could not be captured."""
        with self._lock:
            return dict(self._graph_counts)

    # ---------------------------------------------------------------- inference

    def _check_inputs(
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

    def prepare(
        self,
        size: tuple[int, int],
        image: np.ndarray | None = None,
        homography: np.ndarray | None = None,
    ) -> PreparedRequest:
        """Check a request (ConfigError before any GPU work) and get it ready to `enqueue`.

        Without a CUDA graph for it, this sets the size values and input shapes on the main
        execution context, so enqueueing the same request again needs no shape change.
        """
        hw, arrays = self._check_inputs(size, image, homography)
        shapes = _shapes_of(arrays)
        key = (hw, tuple(sorted(shapes.items())))
        with self._lock:
            self._check_open()
            if self._graph_capacity == 0:
                cuda_graph = "off"
            elif key in self._graph_failed:
                cuda_graph = "failed"
            else:
                cuda_graph = "cached" if key in self._graphs else "capture"
            if cuda_graph in ("off", "failed"):
                self._set_main_shapes(key, hw, shapes)
        return PreparedRequest(hw, arrays, key, cuda_graph)

    def enqueue(self, request: PreparedRequest, events: Sequence[Any] | None = None) -> EnqueuedRequest:
        """Copy the inputs in, run the engine (or launch its graph), copy the output out; no wait.

        Everything goes on `stream`. `events`: four CUDA events (cudaEvent_t) to record on it
        before the input copies, after them, after the enqueue or graph launch, and after the
        output copy; on a request that captures a graph the capture happens between the last
        two. `fetch` the result before the next enqueue: the pinned output buffer is shared.
        """
        if events is not None and len(events) != 4:
            raise ConfigError(f"events must be 4 CUDA events, got {len(events)}")
        with self._lock:
            self._check_open()
            cudart = self._cudart
            key = request.key
            use_graphs = self._graph_capacity > 0 and key not in self._graph_failed
            cached = self._graphs.get(key) if use_graphs else None
            if cached is not None:
                self._graphs.move_to_end(key)
                output_shape = cached.output_shape
                out_nbytes = self._output_nbytes(output_shape)
                enqueue_s = self._submit(request.inputs, events, graph=cached)
                self._graph_counts["launches"] += 1
            elif use_graphs:
                output_shape, out_nbytes, enqueue_s = self._run_and_capture(request, events)
            else:
                if self._main_shapes is not None and self._main_shapes[0] == key:
                    output_shape = self._main_shapes[1]
                else:  # prepared for a graph that failed since, or another size came in between
                    output_shape = self._set_main_shapes(key, request.size, _shapes_of(request.inputs))
                out_nbytes = self._output_nbytes(output_shape)
                enqueue_s = self._submit(request.inputs, events, context=self._context)
            self._tickets += 1
            out_ptr, _out_capacity, out_host = self._bufs[OUTPUT_NAME]
            check_cuda(
                cudart.cudaMemcpyAsync(
                    out_host.ctypes.data, out_ptr, out_nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream,
                ),
                "cudaMemcpyAsync(output to host)",
            )
            self._record(events, 3)
            return EnqueuedRequest(output_shape, enqueue_s, self._tickets)

    def fetch(self, enqueued: EnqueuedRequest) -> np.ndarray:
        """Wait for the stream; the output of `enqueued` as a new array."""
        with self._lock:
            self._check_open()
            if enqueued.ticket != self._tickets:
                raise InganError("a later enqueue overwrote this output; fetch each request before the next enqueue")
            check_cuda(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            out_nbytes = self._output_nbytes(enqueued.output_shape)
            out_host = self._bufs[OUTPUT_NAME][2]
            # Copy out of the pinned buffer: the next enqueue overwrites it.
            return out_host[:out_nbytes].view(self._output_dtype).reshape(enqueued.output_shape).copy()

    def run(
        self,
        size: tuple[int, int],
        image: np.ndarray | None = None,
        homography: np.ndarray | None = None,
    ) -> np.ndarray:
        """Generate one output of `size` = (height, width).

        Returns a new array: uint8 [N, H, W, 3] or float32 [N, 3, H, W] (the engine decides).
        """
        request = self.prepare(size, image, homography)
        with self._lock:
            return self.fetch(self.enqueue(request))

    def _check_open(self) -> None:
        if self._closed:
            raise InganError("this TensorRT session is closed")

    def _set_main_shapes(
        self, key: Any, hw: tuple[int, int], shapes: dict[str, tuple[int, ...]]
    ) -> tuple[int, ...]:
        """`_set_shapes` on the main context, remembering for which key (the output shape)."""
        self._main_shapes = None  # unknown until set: a failed change leaves it half done
        output_shape = self._set_shapes(hw, shapes)
        self._main_shapes = (key, output_shape)
        return output_shape

    def _output_nbytes(self, output_shape: tuple[int, ...]) -> int:
        out_capacity = self._bufs[OUTPUT_NAME][1]
        out_nbytes = int(np.prod(output_shape, dtype=np.int64)) * self._output_dtype.itemsize
        if out_nbytes > out_capacity:  # cannot happen for a graph whose output grows with size
            raise InganError(
                f"output {output_shape} needs {out_nbytes} bytes but {out_capacity} were sized "
                f"from the profile maximum"
            )
        return out_nbytes

    def _submit(self, arrays: dict[str, np.ndarray], events: Sequence[Any] | None, *,
                context: Any = None, graph: _CudaGraph | None = None) -> float:
        """Inputs -> the fixed device buffers (through their pinned staging buffers), then the
        enqueue on `context` or the launch of `graph`; events 0-2 around them. Returns the host
        seconds of the enqueue or launch call."""
        cudart = self._cudart
        staged = []
        for name, array in arrays.items():  # host work first, so event 0..1 times only the copies
            device_ptr, _capacity, host = self._bufs[name]
            host[: array.nbytes] = array.reshape(-1).view(np.uint8)
            staged.append((name, device_ptr, host.ctypes.data, array.nbytes))
        self._record(events, 0)
        for name, device_ptr, host_ptr, nbytes in staged:
            check_cuda(
                cudart.cudaMemcpyAsync(
                    device_ptr, host_ptr, nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream
                ),
                f"cudaMemcpyAsync({name} to device)",
            )
        self._record(events, 1)
        started = time.perf_counter()
        if graph is not None:
            check_cuda(cudart.cudaGraphLaunch(graph.graph_exec, self._stream), "cudaGraphLaunch")
        else:
            self._enqueue(context)
        enqueue_s = time.perf_counter() - started
        self._record(events, 2)
        return enqueue_s

    def _record(self, events: Sequence[Any] | None, index: int) -> None:
        if events is not None:
            check_cuda(self._cudart.cudaEventRecord(events[index], self._stream), "cudaEventRecord")

    def _enqueue(self, context: Any) -> None:
        if not context.execute_async_v3(self._stream_int):
            # Drain the stream before reporting so nothing is in flight on our buffers.
            self._cudart.cudaStreamSynchronize(self._stream)
            raise InganError(f"TensorRT inference failed: {_errors_text(self._logger)}")

    # ---------------------------------------------------------------- CUDA graphs

    def _run_and_capture(
        self, request: PreparedRequest, events: Sequence[Any] | None
    ) -> tuple[tuple[int, ...], int, float]:
        """First request for `key`: run it on a new context, then capture that context's enqueue.

        Recipe (TensorRT "CUDA Graphs", Optimizing TensorRT Performance,
        https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/performance/optimization.html, and
        trtexec: samples/common/sampleInference.cpp + sampleDevice.h `TrtCudaGraph` at 11.1,
        https://github.com/NVIDIA/TensorRT/blob/main/samples/common/sampleInference.cpp):
        set input shapes and addresses, enqueue once normally and synchronize ("Avoid capturing
        initialization calls by executing the enqueue function at least once before starting
        CUDA graph capture"), then cudaStreamBeginCapture(stream, ThreadLocal) -> enqueue ->
        cudaStreamEndCapture -> cudaGraphInstantiate. "When the stream is capturing, the enqueue
        call may return false if the current CUDA graph capture fails": then end the capture,
        destroy any partial graph, clear the CUDA error, and run this key without a graph.

        Why one execution context per graph: a graph replays what the enqueue recorded for the
        context's state at capture time (shapes, shape-tensor values that TensorRT read from
        host memory on the CPU, tensor addresses, internal buffers). Re-using that context for
        another size would change the state the graph depends on, so each cached graph owns a
        context that is never touched again. The contexts are USER_MANAGED and share one scratch
        block: "using it in another execution context running in parallel" is what
        NvInferRuntime.h `setDeviceMemoryV2` forbids, and ours run one at a time on one stream.
        The `size` values live in pinned memory owned by the entry and never rewritten, so even
        a graph that re-reads them at launch sees its own values.

        The warm-up run computes this request's output (the captured enqueue does not execute),
        so the caller only copies the output back. Returns (output shape, output bytes, host
        seconds of that run's enqueue call).
        """
        trt, cudart, engine = self._trt, self._cudart, self._engine
        key, hw, shapes = request.key, request.size, _shapes_of(request.inputs)
        if self._scratch is None:
            scratch_bytes = int(engine.device_memory_size_v2)
            scratch_ptr = 0
            if scratch_bytes > 0:
                scratch_ptr = check_cuda(
                    cudart.cudaMalloc(scratch_bytes), f"cudaMalloc(graph scratch, {scratch_bytes} bytes)"
                )
                self._device_ptrs.append(scratch_ptr)
            self._scratch = (scratch_ptr, scratch_bytes)
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise EngineLoadError(f"TensorRT could not create an execution context: {_errors_text(self._logger)}")
        context.set_device_memory(self._scratch[0], self._scratch[1])
        size_ptr, size_host = self._pinned(2 * self._size_dtype.itemsize, "size", self._size_dtype, owned=False)
        entry: _CudaGraph | None = None
        try:
            for name, (device_ptr, _nbytes, _host) in self._bufs.items():
                if not context.set_tensor_address(name, device_ptr):
                    raise EngineLoadError(f"TensorRT refused the buffer for '{name}': {_errors_text(self._logger)}")
            output_shape = self._set_shapes(hw, shapes, context=context, size_host=size_host)
            out_nbytes = self._output_nbytes(output_shape)
            # the normal run after the shape change; computes this output
            enqueue_s = self._submit(request.inputs, events, context=context)
            check_cuda(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            graph, graph_exec, why = self._capture(context)
            if graph_exec is None:
                self._graph_capture_failed(key, why)
            else:
                entry = _CudaGraph(context, graph, graph_exec, size_ptr, output_shape)
                self._graphs[key] = entry  # most recently used: never the one evicted below
                self._graph_counts["captures"] += 1
                errors: list[str] = []
                while len(self._graphs) > self._graph_capacity:
                    _old_key, old = self._graphs.popitem(last=False)
                    self._graph_counts["evictions"] += 1
                    errors += self._destroy_graph(old)
                if errors:
                    raise CudaError("; ".join(errors))
            return output_shape, out_nbytes, enqueue_s
        finally:
            if entry is None:  # failed or not capturable: nothing keeps the context or its values
                check_cuda(cudart.cudaFreeHost(size_ptr), "cudaFreeHost")

    def _capture(self, context: Any) -> tuple[Any, Any, str]:
        """(graph, graph_exec, "") or (None, None, why) for one enqueue of `context`."""
        cudart = self._cudart
        check_cuda(
            cudart.cudaStreamBeginCapture(
                self._stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
            ),
            "cudaStreamBeginCapture",
        )
        try:
            enqueued = bool(context.execute_async_v3(self._stream_int))
        except BaseException:
            _err, graph = cudart.cudaStreamEndCapture(self._stream)  # leave capture mode, then raise
            if not _is_null(graph):
                cudart.cudaGraphDestroy(graph)
            raise
        err, graph = cudart.cudaStreamEndCapture(self._stream)  # always: leaves capture mode
        why = ""
        if not enqueued:
            why = f"the enqueue cannot be captured ({_errors_text(self._logger)})"
        elif int(err) != 0 or _is_null(graph):
            why = f"cudaStreamEndCapture: {_error_name(err)}"
        else:
            err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
            if int(err) == 0 and not _is_null(graph_exec):
                return graph, graph_exec, ""
            why = f"cudaGraphInstantiate: {_error_name(err)}"
        if not _is_null(graph):
            cudart.cudaGraphDestroy(graph)
        cudart.cudaGetLastError()  # clear the capture error (trtexec does the same)
        self._logger.take_errors()  # do not blame the next failure on this one
        return None, None, why

    def _graph_capture_failed(self, key: Any, why: str) -> None:
        self._graph_counts["failures"] += 1
        self._graph_failed[key] = None
        while len(self._graph_failed) > max(64, 4 * self._graph_capacity):
            self._graph_failed.popitem(last=False)
        if not self._graph_failure_logged:
            self._graph_failure_logged = True
            log.warning("CUDA graph capture failed (%s); running without a graph for this size", why)
        else:
            log.debug("CUDA graph capture failed for %s: %s", key, why)

    def _destroy_graph(self, entry: _CudaGraph) -> list[str]:
        """Free one cached graph; returns the CUDA errors (the caller decides to raise)."""
        cudart = self._cudart
        errors = []
        for result, what in (
            (cudart.cudaGraphExecDestroy(entry.graph_exec), "cudaGraphExecDestroy"),
            (cudart.cudaGraphDestroy(entry.graph), "cudaGraphDestroy"),
            (cudart.cudaFreeHost(entry.size_ptr), "cudaFreeHost"),
        ):
            try:
                check_cuda(result, what)
            except CudaError as exc:
                errors.append(str(exc))
        entry.context = None  # the context goes after its graph
        return errors

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
                    check_cuda(result, what)
                except CudaError as exc:
                    errors.append(str(exc))

            if cudart is not None and self._stream is not None:
                attempt(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            # Graphs before the contexts they were captured from.
            while self._graphs:
                _key, entry = self._graphs.popitem(last=False)
                errors += self._destroy_graph(entry)
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
