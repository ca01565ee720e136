"""Run a serialized TensorRT engine (plan) that follows docs/onnx-contract.md.

Low level on purpose: numpy in, numpy out, no torch. `tensorrt` (or `tensorrt_lean`) and
cuda-python are imported only when a session is created, so importing this module is free.
The engine's I/O and the request checks are in trt_io.py, the optional CUDA-graph cache in
trt_graphs.py, the CUDA and TensorRT helpers in cuda.py and trt_helpers.py.

TensorRT facts this code relies on (sources inline; the CUDA-graph recipe in trt_graphs.py):

- `size` is a *shape tensor*: TensorRT reads its values from HOST memory that must stay
  alive and unchanged until the enqueue returns (NvInferRuntime.h `setTensorAddress`,
  https://github.com/NVIDIA/TensorRT/blob/main/include/NvInferRuntime.h).
- `execute_async_v3` on the default stream adds device-wide syncs, so we use our own stream
  (docstring of `IExecutionContext.execute_async_v3` in the 11.4 bindings).
- Deserializing on a machine without a usable GPU crashes the process (segfault seen with
  tensorrt_lean 11.4.0.106 on a driver-less host), so the GPU is checked first.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Sequence

import numpy as np

from ingan.contract import HOMOGRAPHY_INPUT, IMAGE_INPUT, OUTPUT_NAME, SIZE_INPUT
from ingan.errors import ConfigError, DeviceError, InganError
from ingan.extras import missing
from ingan.runtime.cuda import CudaError, CudaMemory, check_cuda, cuda_device_status, import_cudart, stream_handle
from ingan.runtime.trt_graphs import CudaGraph, CudaGraphCache
from ingan.runtime.trt_helpers import EngineLoadError, deserialize_plan, errors_text, import_tensorrt, make_logger
from ingan.runtime.trt_io import EngineIO, shapes_of

log = logging.getLogger(__name__)


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


def _buffers(memory: CudaMemory, name: str, shape: Sequence[int], dtype: np.dtype) -> tuple[int, int, np.ndarray]:
    """(device buffer, its bytes, pinned host staging buffer) for one tensor at `shape`."""
    nbytes = max(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, 1)
    device_ptr = memory.device(nbytes, name)
    _host_ptr, host = memory.pinned(nbytes, name)
    return device_ptr, nbytes, host


class TrtEngineSession:
    """One deserialized engine + execution context + stream + buffers sized for the profile max.

    Not thread-safe for concurrent `run` calls (one context, one stream); a lock serializes
    them. Use as a context manager or call `close()`.

    `cuda_graphs=N` (N > 0) keeps an LRU of up to N CUDA graphs, one per key
    (size, input shapes) (trt_graphs.py). The first request for a key runs normally on a fresh
    execution context and captures that context's enqueue; later requests for the key copy
    their inputs into the same fixed device buffers and replay the graph with
    `cudaGraphLaunch`. Engines whose enqueue cannot be captured fall back to plain execution
    for that key (logged once). 0 (the default) never touches CUDA graphs.

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
        self._memory: CudaMemory | None = None  # the buffers, freed by close()
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._main_shapes: tuple[Any, tuple[int, ...]] | None = None  # (key, output shape) set on _context
        self._tickets = 0  # enqueues so far
        self._graphs = CudaGraphCache(cuda_graphs)  # ConfigError for a bad capacity
        try:
            self._open(plan, lean=lean, allow_host_code=allow_host_code)
        except BaseException:
            self._release(raise_errors=False)
            raise

    # ---------------------------------------------------------------- setup

    def _open(self, plan: bytes, *, lean: bool, allow_host_code: bool) -> None:
        trt = import_tensorrt(lean)
        cudart = import_cudart()
        if cudart is None:
            raise missing("cuda.bindings", "Running a TensorRT engine")
        self._cudart = cudart
        memory = self._memory = CudaMemory(cudart)
        ok, reason = cuda_device_status()
        if not ok:  # checked first: deserializing without a GPU segfaults
            raise DeviceError(f"cannot run a TensorRT engine: {reason}")

        self._trt = trt
        self._logger = make_logger(trt)
        self._runtime, engine = deserialize_plan(trt, self._logger, plan, lean=lean, allow_host_code=allow_host_code)
        self._engine = engine
        io = self._io = EngineIO.read(trt, engine)
        # Host memory TensorRT reads the shape values from: allocated once (pinned), lives as
        # long as the session, rewritten in place before each enqueue.
        _ptr, self._size_host = memory.pinned(2 * io.size_dtype.itemsize, SIZE_INPUT, io.size_dtype)

        context = engine.create_execution_context()
        if context is None:
            raise EngineLoadError(f"TensorRT could not create an execution context: {errors_text(self._logger)}")
        self._context = context
        self._stream = check_cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._stream_int = stream_handle(self._stream)

        # Size every buffer once, at the profile maximum (the way TensorRT's samples do:
        # samples/python/common_runtime.py allocate_buffers), then reuse it for every run.
        max_shapes = io.max_shapes
        output_shape = self._set_shapes(io.size_max, max_shapes)
        self._bufs: dict[str, tuple[int, int, np.ndarray]] = {}
        for name, shape in max_shapes.items():
            self._bufs[name] = _buffers(memory, name, shape, io.input_dtypes[name])
        self._bufs[OUTPUT_NAME] = _buffers(memory, OUTPUT_NAME, output_shape, io.output_dtype)
        self._bind_buffers(context)
        log.debug(
            "TensorRT %s engine loaded: inputs %s, size range %s..%s, output %s",
            trt.__version__, io.inputs, io.size_min, io.size_max, io.output_dtype,
        )

    def _bind_buffers(self, context: Any) -> None:
        """Point `context`'s device inputs and output at the session's fixed buffers."""
        for name, (device_ptr, _nbytes, _host) in self._bufs.items():
            if not context.set_tensor_address(name, device_ptr):
                raise EngineLoadError(f"TensorRT refused the buffer for '{name}': {errors_text(self._logger)}")

    def _set_shapes(self, size: tuple[int, int], shapes: dict[str, tuple[int, ...]],
                    context: Any = None, size_host: np.ndarray | None = None) -> tuple[int, ...]:
        """Set the size values and input shapes (main context unless given); return the output shape."""
        context = self._context if context is None else context
        size_host = self._size_host if size_host is None else size_host
        size_host[0], size_host[1] = size
        # Shape-tensor input: a HOST pointer (NvInferRuntime.h setTensorAddress).
        if not context.set_tensor_address(SIZE_INPUT, size_host.ctypes.data):
            raise InganError(f"TensorRT refused the '{SIZE_INPUT}' address: {errors_text(self._logger)}")
        for name, shape in shapes.items():
            if not context.set_input_shape(name, tuple(int(d) for d in shape)):
                raise ConfigError(
                    f"TensorRT rejected shape {tuple(shape)} for '{name}': {errors_text(self._logger)}"
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
        return self._io.inputs

    @property
    def output_name(self) -> str:
        return OUTPUT_NAME

    @property
    def has_image_input(self) -> bool:
        return IMAGE_INPUT in self._io.inputs

    @property
    def has_homography(self) -> bool:
        return HOMOGRAPHY_INPUT in self._io.inputs

    @property
    def size_range(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((min_h, min_w), (max_h, max_w)) from optimization profile 0."""
        return self._io.size_min, self._io.size_max

    @property
    def cuda_graph_keys(self) -> tuple[Any, ...]:
        """Cached graph keys, least recently used first: ((h, w), ((input, shape), ...))."""
        with self._lock:
            return self._graphs.keys

    @property
    def cuda_graph_counts(self) -> dict[str, int]:
        """How often graphs were captured, launched, evicted, or could not be captured."""
        with self._lock:
            return self._graphs.counts

    # ---------------------------------------------------------------- inference

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
        hw, arrays = self._io.check_request(size, image, homography)
        shapes = shapes_of(arrays)
        key = (hw, tuple(sorted(shapes.items())))
        with self._lock:
            self._check_open()
            cuda_graph = self._graphs.plan(key)
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
            cached = self._graphs.lookup(key)
            if cached is not None:
                output_shape = cached.output_shape
                out_nbytes = self._output_nbytes(output_shape)
                enqueue_s = self._submit(request.inputs, events, graph=cached)
                self._graphs.launched()
            elif self._graphs.wants(key):
                output_shape, out_nbytes, enqueue_s = self._run_and_capture(request, events)
            else:
                if self._main_shapes is not None and self._main_shapes[0] == key:
                    output_shape = self._main_shapes[1]
                else:  # prepared for a graph that failed since, or another size came in between
                    output_shape = self._set_main_shapes(key, request.size, shapes_of(request.inputs))
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
            return out_host[:out_nbytes].view(self._io.output_dtype).reshape(enqueued.output_shape).copy()

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
        out_nbytes = int(np.prod(output_shape, dtype=np.int64)) * self._io.output_dtype.itemsize
        if out_nbytes > out_capacity:  # cannot happen for a graph whose output grows with size
            raise InganError(
                f"output {output_shape} needs {out_nbytes} bytes but {out_capacity} were sized "
                f"from the profile maximum"
            )
        return out_nbytes

    def _submit(self, arrays: dict[str, np.ndarray], events: Sequence[Any] | None, *,
                context: Any = None, graph: CudaGraph | None = None) -> float:
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
            raise InganError(f"TensorRT inference failed: {errors_text(self._logger)}")

    # ---------------------------------------------------------------- CUDA graphs

    def _run_and_capture(
        self, request: PreparedRequest, events: Sequence[Any] | None
    ) -> tuple[tuple[int, ...], int, float]:
        """First request for its key: run it normally on a fresh execution context, then capture
        that context's enqueue into the cache (the recipe, and why one context per graph:
        trt_graphs.py). The run computes this request's output (a captured enqueue does not
        execute), so the caller only copies the output back. Returns (output shape, output
        bytes, host seconds of that run's enqueue call)."""
        cudart, io, memory = self._cudart, self._io, self._memory
        assert memory is not None
        context = self._graphs.new_context(self._trt, self._engine, self._logger, memory)
        size_ptr, size_host = memory.pinned(2 * io.size_dtype.itemsize, SIZE_INPUT, io.size_dtype, owned=False)
        entry: CudaGraph | None = None
        try:
            self._bind_buffers(context)
            output_shape = self._set_shapes(request.size, shapes_of(request.inputs), context=context,
                                            size_host=size_host)
            out_nbytes = self._output_nbytes(output_shape)
            # the normal run after the shape change; computes this output
            enqueue_s = self._submit(request.inputs, events, context=context)
            check_cuda(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
            entry, errors = self._graphs.capture(cudart, request.key, context, size_ptr, output_shape,
                                                 self._stream, self._stream_int, self._logger)
            if errors:
                raise CudaError("; ".join(errors))
            return output_shape, out_nbytes, enqueue_s
        finally:
            if entry is None:  # failed or not capturable: nothing keeps the context or its values
                check_cuda(cudart.cudaFreeHost(size_ptr), "cudaFreeHost")

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
            errors += self._graphs.clear(cudart)
            # TensorRT objects first (context before engine before runtime), then our memory.
            self._context = None
            self._engine = None
            self._runtime = None
            self.__dict__.pop("_bufs", None)  # drop numpy views before their memory goes
            if self._memory is not None:
                errors += self._memory.free_all()
            if cudart is not None:
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
