"""Probes that time an `ingan.runtime` runner call with the host clock: ONNX Runtime (CPU and
CUDA) and PyTorch on the CPU."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ingan.bench.memory import device_growth, device_used_bytes
from ingan.bench.models import CellSpec
from ingan.bench.probes.base import Probe, request_inputs, timed
from ingan.errors import InganError


class RunnerProbe(Probe):
    """Any `ingan.runtime` runner, timed with perf_counter (CPU backends, ONNX Runtime on CUDA)."""

    def __init__(self, runner: Any, size: tuple[int, int], gpu: bool, baseline: int | None = None) -> None:
        super().__init__()
        self.runner = runner
        self.size = size
        self.image, self.homography = request_inputs(runner.metadata)
        self.device = runner.device
        self.gpu = gpu
        self.baseline = baseline  # device memory in use before the model was loaded

    def request(self) -> np.ndarray:
        return self.runner.retarget(self.size, homography=self.homography, image=self.image)

    def step(self) -> dict[str, float]:
        started = time.perf_counter()
        self.runner.retarget(self.size, homography=self.homography, image=self.image)
        host = (time.perf_counter() - started) * 1e3
        backend = self.runner.last_timing.seconds * 1e3 if self.runner.last_timing else host
        return {"host_latency": host, "latency": backend}

    def memory(self) -> dict[str, Any]:
        if not self.gpu:
            return super().memory()
        return device_growth(self.baseline, "cuda-python cannot read the GPU")

    def close(self) -> None:
        self.runner.close()


def open_runner(spec: CellSpec, cold: dict[str, Any]) -> Probe:
    """Load the model through `ingan.runtime.load` as the cell's variant asks (an ONNX Runtime
    provider, say) and serve the first request; the probe times requests with the host clock."""
    import ingan.runtime
    from ingan.bench.models import bench_backends

    cls, variant = bench_backends()[spec.backend]
    model, size = spec.model, spec.size
    baseline = device_used_bytes() if spec.device == "cuda" else None
    providers = [variant.provider] if variant.provider else None
    runner, cold["load_s"] = timed(lambda: ingan.runtime.load(
        model.path, cls.backend, providers=providers, device=spec.device if cls.devices != ("cuda",) else None,
        threads=spec.threads if "threads" in cls.takes else 0))
    try:
        if variant.provider is not None and runner.device != variant.provider:
            raise InganError(f"{cls.backend} could not use {variant.provider} (it fell back to {runner.device})")
        probe = RunnerProbe(runner, size, gpu=spec.device == "cuda", baseline=baseline)
        _, cold["first_request_s"] = timed(probe.request)
    except BaseException:
        runner.close()
        raise
    precision = model.metadata.precision
    if spec.device == "cuda":
        probe.timer = "wall-clock"
        probe.math_mode = "fp16" if precision == "fp16" else "tf32"
        probe.notes.append(f"{cls.backend} on CUDA: wall-clock of the runner call (its own copies inside); no CUDA "
                           "events: the runtime does not expose its stream")
        if precision != "fp16":
            probe.notes.append("FP32 graph assumed to run with TF32 (ONNX Runtime's CUDA EP and TensorRT "
                               "enable TF32 by default)")
    else:
        probe.math_mode = precision
    return probe
