"""The TensorRT probe: a TensorRT runner's session, timed with CUDA events on its stream."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ingan.bench.memory import device_growth, device_used_bytes
from ingan.bench.models import CellSpec
from ingan.bench.probes.base import CaptureError, Probe, request_inputs, timed
from ingan.errors import InganError
from ingan.metadata import ModelMetadata


class TrtProbe(Probe):
    """The session of a TensorRT runner, driven step by step with CUDA events on its stream.

    Each step is `TrtEngineSession.enqueue` + `fetch`, the code `TrtEngineSession.run` runs:
    without graphs the shapes stay set on the session's main execution context (`prepare`) and
    each request calls `execute_async_v3`; with graphs it launches the graph the runner's own
    CUDA-graph cache captured on the first request (`ingan-run --cuda-graphs`), so the numbers
    are those of the code users run. Each request copies its inputs into the session's pinned
    staging buffers and from there to the device (H2D), runs, and copies the output back into
    pinned memory (D2H); `enqueue` records this probe's four events between those steps.
    """

    timer = "cuda-events"
    _NEEDED = ("stream", "prepare", "enqueue", "fetch")  # TrtEngineSession's public API for split timing

    def __init__(self, session: Any, size: tuple[int, int], meta: ModelMetadata, graphs: bool,
                 device_name: str, owner: Any = None, baseline: int | None = None) -> None:
        super().__init__()
        from ingan.runtime.cuda import check_cuda, import_cudart

        missing = [name for name in self._NEEDED if not hasattr(session, name)]
        if missing:
            raise InganError(f"this TrtEngineSession lacks {', '.join(missing)}; ingan.bench needs updating")
        self._call = check_cuda  # (result, what) -> value; raises CudaError naming the failed call
        self.session = session
        self.owner = owner  # the runner that owns the session (closed with the probe)
        self.baseline = baseline
        self.meta = meta
        self.device = device_name
        flags = [str(f).upper() for f in (meta.tensorrt or {}).get("flags", [])]
        self.math_mode = "fp16" if meta.precision == "fp16" else ("tf32" if "TF32" in flags else "fp32")
        cudart = self.cudart = import_cudart()
        image, homography = request_inputs(meta)
        image_nchw = None
        if image is not None:
            image_nchw = np.ascontiguousarray(np.transpose(image, (2, 0, 1))[None], dtype=np.float32) / 255.0
        self.prepared = session.prepare(size, image_nchw, None if homography is None else homography[None])
        if graphs and self.prepared.cuda_graph != "cached":
            if self.prepared.cuda_graph == "failed":
                raise CaptureError("TensorRT could not capture this engine's enqueue into a CUDA graph "
                                   "(the runner fell back to plain enqueues)")
            raise InganError("the runner cached no CUDA graph for this size (was it loaded with cuda_graphs?)")
        self.events = [self._call(cudart.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]

    def request(self) -> np.ndarray:
        return self._run()[1]

    def _run(self) -> tuple[dict[str, float], np.ndarray]:
        from ingan.runtime.base import to_hwc_uint8

        cudart, session, call = self.cudart, self.session, self._call
        ev = self.events
        t0 = time.perf_counter()
        enqueued = session.enqueue(self.prepared, events=ev)
        result = to_hwc_uint8(session.fetch(enqueued), self.meta.output_format)
        t1 = time.perf_counter()
        h2d = float(call(cudart.cudaEventElapsedTime(ev[0], ev[1]), "cudaEventElapsedTime"))
        compute = float(call(cudart.cudaEventElapsedTime(ev[1], ev[2]), "cudaEventElapsedTime"))
        d2h = float(call(cudart.cudaEventElapsedTime(ev[2], ev[3]), "cudaEventElapsedTime"))
        sample = {"gpu_compute": compute, "d2h": d2h, "enqueue": enqueued.enqueue_s * 1e3,
                  "host_latency": (t1 - t0) * 1e3}
        if self.prepared.inputs:  # a baked-image model without warp has no device inputs: no H2D at all
            sample["h2d"] = h2d
        sample["latency"] = sample.get("h2d", 0.0) + compute + d2h
        return sample, result

    def step(self) -> dict[str, float]:
        return self._run()[0]

    def memory(self) -> dict[str, Any]:
        return device_growth(self.baseline, "cudaMemGetInfo failed")

    def close(self) -> None:
        cudart = self.cudart
        try:
            cudart.cudaStreamSynchronize(self.session.stream)
            for event in self.events:
                cudart.cudaEventDestroy(event)
        finally:
            self.events = []
            if self.owner is not None:
                self.owner.close()
            else:
                self.session.close()


def open_tensorrt(spec: CellSpec, cold: dict[str, Any], allow_host_code: bool) -> Probe:
    """Load through `ingan.runtime.load` (TensorRT runner), first request, then time its session."""
    import ingan.runtime

    baseline = device_used_bytes()
    graphs = 1 if spec.cuda_graphs else 0  # the runner's LRU of graphs: one size per cell
    runner, cold["load_s"] = timed(lambda: ingan.runtime.load(spec.model.path, "tensorrt",
                                                              allow_host_code=allow_host_code, cuda_graphs=graphs))
    try:
        image, homography = request_inputs(spec.model.metadata)
        _, cold["first_request_s"] = timed(lambda: runner.retarget(spec.size, homography=homography, image=image))
        session = getattr(runner, "session", None)
        if session is None:
            raise InganError("the TensorRT runner exposes no session; ingan.bench needs updating")
        probe = TrtProbe(session, spec.size, spec.model.metadata, spec.cuda_graphs, runner.device, owner=runner,
                         baseline=baseline)
    except BaseException:
        runner.close()
        raise
    if spec.cuda_graphs:
        probe.notes.append("CUDA graph: the runner's own cache (ingan-run --cuda-graphs); the first request "
                           "includes the capture")
    return probe
