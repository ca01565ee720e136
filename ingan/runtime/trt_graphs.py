"""The TensorRT session's optional CUDA-graph cache (`cuda_graphs=N`): an LRU of captured enqueues.

One graph per key (size, input shapes). A graph replays the kernels, tensor addresses and
shape-tensor values of its capture: TensorRT reads `size` from host memory on the CPU inside
the enqueue call, so the values are baked into the graph and the key must (and does) contain
the size. Keys whose enqueue cannot be captured run without a graph (logged once).

Recipe (TensorRT "CUDA Graphs", Optimizing TensorRT Performance,
https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/performance/optimization.html, and
trtexec: samples/common/sampleInference.cpp + sampleDevice.h `TrtCudaGraph` at 11.1,
https://github.com/NVIDIA/TensorRT/blob/main/samples/common/sampleInference.cpp): set input
shapes and addresses, enqueue once normally and synchronize ("Avoid capturing initialization
calls by executing the enqueue function at least once before starting CUDA graph capture"),
then cudaStreamBeginCapture(stream, ThreadLocal) -> enqueue -> cudaStreamEndCapture ->
cudaGraphInstantiate. "When the stream is capturing, the enqueue call may return false if the
current CUDA graph capture fails": then end the capture, destroy any partial graph, clear the
CUDA error, and run this key without a graph. The session (ingan/runtime/trt_session.py) does
the normal run; this module creates the context, captures, and keeps the graphs.

Why one execution context per graph: a graph replays what the enqueue recorded for the
context's state at capture time (shapes, shape-tensor values that TensorRT read from host
memory on the CPU, tensor addresses, internal buffers). Re-using that context for another size
would change the state the graph depends on, so each cached graph owns a context that is never
touched again. The contexts are USER_MANAGED and share one scratch block: "using it in another
execution context running in parallel" is what NvInferRuntime.h `setDeviceMemoryV2` forbids,
and ours run one at a time on one stream. The `size` values live in pinned memory owned by the
entry and never rewritten, so even a graph that re-reads them at launch sees its own values.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ingan.errors import ConfigError
from ingan.runtime.cuda import CudaError, CudaMemory, check_cuda, error_name, is_null_handle
from ingan.runtime.trt_helpers import EngineLoadError, errors_text

log = logging.getLogger(__name__)


def check_cuda_graphs(cuda_graphs: Any) -> int:
    """The cache's capacity: a whole number >= 0 (0 = off)."""
    if isinstance(cuda_graphs, bool) or not isinstance(cuda_graphs, int) or cuda_graphs < 0:
        raise ConfigError(f"cuda_graphs must be a whole number >= 0 (0 = off), got {cuda_graphs!r}")
    return cuda_graphs


@dataclass
class CudaGraph:
    """One captured enqueue: its own execution context, graph, and pinned `size` values."""

    context: Any
    graph: Any
    graph_exec: Any
    size_ptr: int  # pinned host memory holding this key's (height, width); never rewritten
    output_shape: tuple[int, ...]


def capture_enqueue(cudart: ModuleType, stream: Any, stream_int: int, context: Any,
                    logger: Any) -> tuple[Any, Any, str]:
    """(graph, graph_exec, "") or (None, None, why) for one enqueue of `context` on `stream`."""
    check_cuda(
        cudart.cudaStreamBeginCapture(stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
        "cudaStreamBeginCapture",
    )
    try:
        enqueued = bool(context.execute_async_v3(stream_int))
    except BaseException:
        _err, graph = cudart.cudaStreamEndCapture(stream)  # leave capture mode, then raise
        if not is_null_handle(graph):
            cudart.cudaGraphDestroy(graph)
        raise
    err, graph = cudart.cudaStreamEndCapture(stream)  # always: leaves capture mode
    why = ""
    if not enqueued:
        why = f"the enqueue cannot be captured ({errors_text(logger)})"
    elif int(err) != 0 or is_null_handle(graph):
        why = f"cudaStreamEndCapture: {error_name(err)}"
    else:
        err, graph_exec = cudart.cudaGraphInstantiate(graph, 0)
        if int(err) == 0 and not is_null_handle(graph_exec):
            return graph, graph_exec, ""
        why = f"cudaGraphInstantiate: {error_name(err)}"
    if not is_null_handle(graph):
        cudart.cudaGraphDestroy(graph)
    cudart.cudaGetLastError()  # clear the capture error (trtexec does the same)
    logger.take_errors()  # do not blame the next failure on this one
    return None, None, why


def destroy_graph(cudart: ModuleType, entry: CudaGraph) -> list[str]:
    """Free one cached graph; returns the CUDA errors (the caller decides to raise)."""
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


class CudaGraphCache:
    """Up to `capacity` captured graphs, least recently used evicted first; the keys that could
    not be captured; and how often graphs were captured, launched, evicted or failed.

    Not thread-safe on its own: the session calls it under its lock.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = check_cuda_graphs(capacity)
        self._graphs: OrderedDict[Any, CudaGraph] = OrderedDict()
        self._failed: OrderedDict[Any, None] = OrderedDict()
        self._failure_logged = False
        self._counts = {"captures": 0, "launches": 0, "evictions": 0, "failures": 0}
        self._scratch: tuple[int, int] | None = None  # (device ptr, bytes) shared by graph contexts

    @property
    def keys(self) -> tuple[Any, ...]:
        """Cached keys, least recently used first."""
        return tuple(self._graphs)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def wants(self, key: Any) -> bool:
        """Whether `key` runs through a graph: the cache is on and its capture did not fail."""
        return self.capacity > 0 and key not in self._failed

    def plan(self, key: Any) -> str:
        """What the next enqueue of `key` does: "off", "failed", "cached" or "capture"."""
        if self.capacity == 0:
            return "off"
        if key in self._failed:
            return "failed"
        return "cached" if key in self._graphs else "capture"

    def lookup(self, key: Any) -> CudaGraph | None:
        """The cached graph of `key` (now the most recently used), or None."""
        entry = self._graphs.get(key) if self.wants(key) else None
        if entry is not None:
            self._graphs.move_to_end(key)
        return entry

    def launched(self) -> None:
        self._counts["launches"] += 1

    def new_context(self, trt: ModuleType, engine: Any, logger: Any, memory: CudaMemory) -> Any:
        """A fresh USER_MANAGED execution context on the scratch block all graph contexts share
        (allocated from the session's `memory` on first use)."""
        if self._scratch is None:
            scratch_bytes = int(engine.device_memory_size_v2)
            scratch_ptr = memory.device(scratch_bytes, "graph scratch") if scratch_bytes > 0 else 0
            self._scratch = (scratch_ptr, scratch_bytes)
        context = engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        if context is None:
            raise EngineLoadError(f"TensorRT could not create an execution context: {errors_text(logger)}")
        context.set_device_memory(self._scratch[0], self._scratch[1])
        return context

    def capture(self, cudart: ModuleType, key: Any, context: Any, size_ptr: int, output_shape: tuple[int, ...],
                stream: Any, stream_int: int, logger: Any) -> tuple[CudaGraph | None, list[str]]:
        """Capture `context`'s enqueue for `key` (its normal run done and synchronized) and keep
        it, evicting the least recently used. Returns (the entry, which now owns `context` and
        `size_ptr`, or None when the capture failed; the CUDA errors of evicted graphs)."""
        graph, graph_exec, why = capture_enqueue(cudart, stream, stream_int, context, logger)
        if graph_exec is None:
            self._capture_failed(key, why)
            return None, []
        entry = CudaGraph(context, graph, graph_exec, size_ptr, output_shape)
        self._graphs[key] = entry  # most recently used: never the one evicted below
        self._counts["captures"] += 1
        errors: list[str] = []
        while len(self._graphs) > self.capacity:
            _old_key, old = self._graphs.popitem(last=False)
            self._counts["evictions"] += 1
            errors += destroy_graph(cudart, old)
        return entry, errors

    def _capture_failed(self, key: Any, why: str) -> None:
        self._counts["failures"] += 1
        self._failed[key] = None
        while len(self._failed) > max(64, 4 * self.capacity):
            self._failed.popitem(last=False)
        if not self._failure_logged:
            self._failure_logged = True
            log.warning("CUDA graph capture failed (%s); running without a graph for this size", why)
        else:
            log.debug("CUDA graph capture failed for %s: %s", key, why)

    def clear(self, cudart: ModuleType | None) -> list[str]:
        """Destroy every graph (before the contexts they were captured from go); the CUDA errors."""
        errors: list[str] = []
        while self._graphs:
            _key, entry = self._graphs.popitem(last=False)
            errors += destroy_graph(cudart, entry)  # type: ignore[arg-type]  # graphs exist only with cudart
        return errors
