"""The PyTorch probes: the reference runner on the CPU, and generators on CUDA timed with CUDA
events (FP32 through the runner; FP16/BF16 with spectral norm baked in, channels-last)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ingan.bench.models import CellSpec
from ingan.bench.probes.base import Probe, close_quietly, timed
from ingan.bench.probes.runner import RunnerProbe


class TorchCudaProbe(Probe):
    """A generator on CUDA: events around the forward (or graph replay) and the D2H copy."""

    timer = "cuda-events"

    def __init__(self, torch: Any, generator: Any, image: Any, size: tuple[int, int], dtype: Any,
                 channels_last: bool, graphs: bool, device_name: str) -> None:
        super().__init__()
        self.torch = torch
        self.generator = generator
        self.size = (int(size[0]), int(size[1]))
        self.dtype = dtype
        self.device = device_name
        self.stream = torch.cuda.Stream()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.image = image.to(dtype=dtype).contiguous(memory_format=fmt)
        self.out_host = torch.empty((self.size[0], self.size[1], 3), dtype=torch.uint8, pin_memory=True)
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
        self.graph = None
        self.static_out = None
        if dtype == torch.float32:
            allow = bool(torch.backends.cudnn.allow_tf32)
            self.math_mode = "tf32" if allow else "fp32"
            if allow:
                self.notes.append("torch.backends.cudnn.allow_tf32 is on (PyTorch's default): FP32 convs use TF32")
        else:
            self.math_mode = "fp16" if dtype == torch.float16 else "bf16"
        self.graph_capture_s: float | None = None
        self.owner: Any = None  # a runner whose generator this probe borrows; closed with the probe
        # The inputs were made on the current stream; our stream must not run ahead of them.
        self.stream.wait_stream(torch.cuda.current_stream())
        if graphs:
            self._capture()

    def _forward(self) -> Any:
        torch = self.torch
        from ingan.model.tensors import to_uint8

        with torch.no_grad():
            return to_uint8(self.generator(self.image, self.size))[0].contiguous()

    def _capture(self) -> None:
        torch = self.torch
        started = time.perf_counter()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            for _ in range(3):  # warm-up on a side stream before capture, as the PyTorch docs require
                self._forward()
        torch.cuda.current_stream().wait_stream(self.stream)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_out = self._forward()
        torch.cuda.synchronize()
        self.graph = graph
        self.graph_capture_s = time.perf_counter() - started

    def request(self) -> np.ndarray:
        return self._run()[1]

    def _run(self) -> tuple[dict[str, float], np.ndarray]:
        torch = self.torch
        start, mid, end = self.events
        with torch.cuda.stream(self.stream):
            t0 = time.perf_counter()
            start.record(self.stream)
            e0 = time.perf_counter()
            if self.graph is not None:
                self.graph.replay()
                out = self.static_out
            else:
                out = self._forward()
            e1 = time.perf_counter()
            mid.record(self.stream)
            self.out_host.copy_(out, non_blocking=True)
            end.record(self.stream)
            end.synchronize()
            result = self.out_host.numpy().copy()
            t1 = time.perf_counter()
        compute = start.elapsed_time(mid)
        d2h = mid.elapsed_time(end)
        return ({"gpu_compute": compute, "d2h": d2h, "latency": compute + d2h, "enqueue": (e1 - e0) * 1e3,
                 "host_latency": (t1 - t0) * 1e3}, result)

    def step(self) -> dict[str, float]:
        return self._run()[0]

    def memory(self) -> dict[str, Any]:
        torch = self.torch
        return {"device_peak_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1),
                "device_method": "torch caching allocator: peak reserved since the cell started (no CUDA context)"}

    def close(self) -> None:
        self.graph = None
        self.static_out = None
        self.generator = None
        self.image = None
        if self.owner is not None:
            self.owner.close()
            self.owner = None
        self.torch.cuda.synchronize()
        self.torch.cuda.empty_cache()


def open_pytorch(spec: CellSpec, cold: dict[str, Any]) -> Probe:
    """Load the checkpoint for the cell's backend and device, serve the first request, capture a graph."""
    import ingan.runtime
    import torch

    if spec.device == "cpu":
        runner, cold["load_s"] = timed(lambda: ingan.runtime.load(spec.model.path, "pytorch", device="cpu",
                                                                  threads=spec.threads))
        try:
            probe = RunnerProbe(runner, spec.size, gpu=False)
            _, cold["first_request_s"] = timed(probe.request)
        except BaseException:
            runner.close()
            raise
        probe.notes.append(f"PyTorch CPU, {torch.get_num_threads()} threads")
        return probe
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    device_name = f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    from ingan.bench.models import variant

    precision = variant(spec.backend).precision
    if precision is None:
        def load_fp32() -> tuple[Any, Any, Any]:
            runner = ingan.runtime.load(spec.model.path, "pytorch", device="cuda")
            return runner, runner.generator, runner.image

        (runner, generator, image), cold["load_s"] = timed(load_fp32)
        dtype, channels_last = torch.float32, False
        note = "the runner's generator (spectral norm evaluated each forward, as the reference backend runs)"
    else:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]

        def load_lowp() -> tuple[Any, Any, Any]:
            return None, *lowp_generator(torch, spec.model.path, dtype)

        (runner, generator, image), cold["load_s"] = timed(load_lowp)
        channels_last = True
        note = (f"{str(dtype).replace('torch.', '')} weights and activations, channels-last, spectral norm baked "
                "into the weights and the colour calibration applied (as exported)")
    try:
        probe = TorchCudaProbe(torch, generator, image, spec.size, dtype, channels_last, False, device_name)
    except BaseException:
        if runner is not None:
            runner.close()
        raise
    probe.owner = runner
    try:
        _, cold["first_request_s"] = timed(probe.request)
        if spec.cuda_graphs:
            probe._capture()
            cold["graph_capture_s"] = probe.graph_capture_s
    except BaseException:
        close_quietly(probe)
        raise
    probe.notes.append(note)
    return probe


def lowp_generator(torch: Any, path: Path, dtype: Any, device: str = "cuda") -> tuple[Any, Any]:
    """The checkpoint's generator as deployed (spectral norm baked in, colour calibration kept:
    the exported graph's maths, ingan/model/deploy.py) in `dtype`, channels-last, on `device`;
    with the training image as its input. Half precision only on CUDA (docs/export.md)."""
    from ingan.model.checkpoint import load_checkpoint
    from ingan.model.deploy import baked_generator
    from ingan.model.tensors import image_to_tensor

    if device == "cpu" and dtype in (torch.float16, torch.bfloat16):
        raise ValueError("half precision never runs on a CPU")
    ckpt = load_checkpoint(path)
    generator = baked_generator(ckpt.build_generator("cpu"))
    generator = generator.to(device).to(dtype=dtype, memory_format=torch.channels_last).eval()
    return generator, image_to_tensor(ckpt.image, device)
