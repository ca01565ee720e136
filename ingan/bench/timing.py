"""The measurement harness: one *probe* per backend, one loop for all of them.

A cell is one model x backend x precision x CUDA-graphs setting x output size. For each
cell the harness, in this process:

1. loads the model and serves the first request, timing both (the cold start);
2. warms up (a number of requests or a duration, like trtexec's `--warmUp`);
3. times requests until it has at least `iterations` of them AND at least `duration_s`
   has passed (trtexec's `--iterations` / `--duration` rule), or a deadline passes;
4. summarises every metric with trtexec's statistics (`ingan.bench.stats`).

How each backend is timed (field meanings in docs/bench.md):

- TensorRT (`.plan`): on the session's own stream, CUDA events around the H2D copies
  of the real inputs (from pinned memory), around `execute_async_v3` or the CUDA-graph
  launch (GPU Compute Time), and around the D2H copy of the output into pinned memory;
  the host time of the enqueue call is the Enqueue Time. Graph capture follows trtexec:
  one plain enqueue, then capture of one enqueue on the stream.
- PyTorch on CUDA: the same events on a dedicated torch stream around the forward (or
  `CUDAGraph.replay`) and around the copy into a pinned host tensor.
- ONNX Runtime on CUDA: wall-clock of the runner call (ONNX Runtime hides its stream,
  so there is nothing to put events on); its copies are inside that time.
- CPU (ONNX Runtime CPU, PyTorch CPU): `time.perf_counter` around the backend call
  (`runner.last_timing`) and around the whole `runner.retarget`.

No unit test asserts a speed; only the structure of what is measured is tested.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ingan.bench import cost as cost_mod
from ingan.bench.stats import summarize
from ingan.errors import ConfigError, InganError
from ingan.metadata import ModelMetadata
from ingan.sizes import format_size

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- backends


@dataclass(frozen=True)
class BackendInfo:
    name: str
    kind: str  # the model kind it runs: onnx | tensorrt | pytorch
    runtime: str  # tensorrt | onnxruntime | pytorch
    device: str  # cuda | cpu | auto (PyTorch fp32 runs on CUDA when there is one, else on the CPU)
    graphs: bool  # whether CUDA graphs are a dimension for it
    description: str


BACKENDS: dict[str, BackendInfo] = {b.name: b for b in (
    BackendInfo("tensorrt", "tensorrt", "tensorrt", "cuda", True,
                "TensorRT plan (precision as built), CUDA events on its stream"),
    BackendInfo("ort-tensorrt", "onnx", "onnxruntime", "cuda", False,
                "ONNX Runtime, TensorRT execution provider (wall-clock)"),
    BackendInfo("ort-cuda", "onnx", "onnxruntime", "cuda", False,
                "ONNX Runtime, CUDA execution provider (wall-clock)"),
    BackendInfo("ort-cpu", "onnx", "onnxruntime", "cpu", False,
                "ONNX Runtime, CPU execution provider (wall-clock)"),
    BackendInfo("torch-fp32", "pytorch", "pytorch", "auto", True,
                "PyTorch eager FP32 through the runner (CUDA events on a GPU, wall-clock on the CPU)"),
    BackendInfo("torch-fp16", "pytorch", "pytorch", "cuda", True,
                "PyTorch FP16 weights and activations, channels-last (CUDA only)"),
    BackendInfo("torch-bf16", "pytorch", "pytorch", "cuda", True,
                "PyTorch BF16 weights and activations, channels-last (CUDA only)"),
)}
ORT_PROVIDERS = {"ort-tensorrt": "TensorrtExecutionProvider", "ort-cuda": "CUDAExecutionProvider",
                 "ort-cpu": "CPUExecutionProvider"}
KIND_BY_SUFFIX = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnx", ".pt": "pytorch", ".pth": "pytorch"}


def parse_backends(text: str | Sequence[str] | None) -> list[str] | None:
    """'ort-cpu,torch-fp32' -> names; None/'' -> None (everything available); unknown -> ConfigError."""
    if text is None:
        return None
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if not items or items == ["all"]:
        return None
    unknown = [t for t in items if t not in BACKENDS]
    if unknown:
        raise ConfigError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)} (or all)")
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """How long to warm up and to measure each cell (trtexec's defaults: 200 ms, >= 10 runs, >= 3 s)."""

    warmup_iterations: int | None = None  # a count, or
    warmup_seconds: float | None = 0.2  # a duration (trtexec --warmUp=200)
    iterations: int = 10  # at least this many timed requests (trtexec --iterations)
    duration_s: float = 3.0  # and at least this long (trtexec --duration)
    max_iterations: int | None = None  # never more than this (keeps slow CPU cells bounded)

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError("--iterations must be at least 1")
        if self.duration_s < 0:
            raise ConfigError("--duration must not be negative")
        if self.warmup_iterations is not None and self.warmup_iterations < 0:
            raise ConfigError("--warmup must not be negative")
        if self.warmup_seconds is not None and self.warmup_seconds < 0:
            raise ConfigError("--warmup must not be negative")
        if self.max_iterations is not None and self.max_iterations < self.iterations:
            raise ConfigError("--max-iterations must be at least --iterations")

    def to_dict(self) -> dict[str, Any]:
        return {"warmup_iterations": self.warmup_iterations, "warmup_seconds": self.warmup_seconds,
                "min_iterations": self.iterations, "min_duration_s": self.duration_s,
                "max_iterations": self.max_iterations}


def parse_warmup(text: str) -> tuple[int | None, float | None]:
    """'5' -> 5 requests; '200ms', '0.5s', '1m' -> a duration in seconds."""
    value = str(text).strip().lower()
    if re.fullmatch(r"\d+", value):
        return int(value), None
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|m)", value)
    if not match:
        raise ValueError(f"'{text}' is not a warm-up; give a request count (e.g. 5) or a duration (200ms, 2s)")
    number, unit = float(match.group(1)), match.group(2)
    return None, number * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


# --------------------------------------------------------------------------- models


@dataclass
class ModelInfo:
    """A model file checked before any timing: kind, metadata, analytic-cost config."""

    path: Path
    label: str
    kind: str
    metadata: ModelMetadata
    config: Any = None  # GeneratorConfig or None
    entry_executed: bool = True

    def to_dict(self) -> dict[str, Any]:
        meta = self.metadata
        return {
            "label": self.label,
            "path": str(self.path),
            "kind": self.kind,
            "precision": meta.precision,
            "size_range": {"min": format_size(meta.min_size), "max": format_size(meta.max_size)},
            "training_image_size": format_size(meta.training_image_size),
            "image_input": meta.image_input,
            "warp": meta.warp,
            "output_format": meta.output_format,
            "sha256": meta.artifact_sha256 or None,
            "generator_config": self.config.to_dict() if self.config is not None else None,
            "entry_conv_executed": self.entry_executed if self.config is not None else None,
        }


def inspect_model(path: str | Path) -> ModelInfo:
    """Check a model file exists, has a known type and readable metadata (InganError if not).

    Reads the sidecar (`.onnx`, `.plan`) or loads the checkpoint (`.pt`, needs torch);
    it does not load the model into a runtime, so cold starts stay cold.
    """
    p = Path(path)
    if not p.exists():
        raise InganError(f"model '{p}' does not exist; check the path")
    if not p.is_file():
        raise InganError(f"'{p}' is not a file; pass a .plan, .onnx or .pt model file")
    kind = KIND_BY_SUFFIX.get(p.suffix.lower())
    if kind is None:
        raise ConfigError(f"cannot tell the model type of '{p.name}' from its suffix; use .plan/.engine (TensorRT), "
                          ".onnx (ONNX Runtime) or .pt (PyTorch checkpoint)")
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InganError(f"cannot read model '{p}': {exc.strerror or exc}") from None
    if kind == "pytorch":
        from ingan.runtime.backends.torch_ref import checkpoint_metadata  # needs torch; clear error otherwise
        from ingan.model.checkpoint import load_checkpoint

        ckpt = load_checkpoint(p)
        return ModelInfo(p, p.name, kind, checkpoint_metadata(ckpt), ckpt.generator_config, True)
    from ingan.runtime.sidecar import read_sidecar

    meta = read_sidecar(p, expected_kind=kind)
    sibling = (meta.tensorrt or {}).get("onnx") if kind == "tensorrt" else None
    found = cost_mod.model_config_for(p, kind, sibling)
    config, entry = found if found else (None, True)
    return ModelInfo(p, p.name, kind, meta, config, entry)


def label_models(models: list[ModelInfo]) -> None:
    """Make labels unique: the file name, or parent/name when two files share a name."""
    names = [m.path.name for m in models]
    for m in models:
        m.label = m.path.name if names.count(m.path.name) == 1 else f"{m.path.parent.name}/{m.path.name}"


# --------------------------------------------------------------------------- availability


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass
class Availability:
    """What this machine can run; each probe is cached (some import big packages)."""

    device: str = "auto"  # auto | cpu | cuda
    _cache: dict[str, Any] = field(default_factory=dict)

    def _memo(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def ort_providers(self) -> list[str]:
        def read() -> list[str]:
            if not _importable("onnxruntime"):
                return []
            import onnxruntime

            return list(onnxruntime.get_available_providers())
        return self._memo("ort", read)

    def cuda_python_gpu(self) -> tuple[bool, str]:
        def read() -> tuple[bool, str]:
            from ingan.runtime.trt_engine import cuda_device_status

            return cuda_device_status()
        return self._memo("cudart", read)

    def torch_cuda(self) -> bool:
        def read() -> bool:
            if not _importable("torch"):
                return False
            import torch

            return bool(torch.cuda.is_available())
        return self._memo("torch_cuda", read)

    def tensorrt(self) -> tuple[bool, str]:
        if not (_importable("tensorrt") or _importable("tensorrt_lean")):
            return False, "neither 'tensorrt' nor 'tensorrt_lean' is installed (pip install 'ingan[gpu]')"
        return self.cuda_python_gpu()

    def why_not(self, backend: str, model: ModelInfo) -> str | None:
        """None if `backend` can run `model` here, else the reason (for a skipped cell)."""
        info = BACKENDS[backend]
        if info.kind != model.kind:
            return f"{backend} runs {info.kind} models, not {model.kind}"
        if self.device == "cpu" and info.device == "cuda":
            return f"{backend} needs CUDA (--device cpu)"
        if backend in ORT_PROVIDERS:
            available = self.ort_providers()
            if not available:
                return "onnxruntime is not installed (pip install 'ingan[export]' or onnxruntime-gpu)"
            if ORT_PROVIDERS[backend] not in available:
                return f"this onnxruntime has no {ORT_PROVIDERS[backend]} (available: {', '.join(available)})"
            if backend == "ort-cpu" and self.device == "cuda":
                return "ort-cpu runs on the CPU (--device cuda)"
            return None
        if backend == "tensorrt":
            ok, why = self.tensorrt()
            return None if ok else why
        # PyTorch
        if info.device == "cuda" or self.device == "cuda":
            if not self.torch_cuda():
                return f"{backend} needs a CUDA GPU and a CUDA build of torch"
        return None

    def torch_fp32_device(self) -> str:
        if self.device in ("cpu", "cuda"):
            return self.device
        return "cuda" if self.torch_cuda() else "cpu"


def default_backends(model: ModelInfo) -> list[str]:
    return [name for name, info in BACKENDS.items() if info.kind == model.kind]


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class CellSpec:
    model: ModelInfo
    backend: str
    size: tuple[int, int]  # (height, width)
    cuda_graphs: bool
    device: str  # cuda | cpu
    outside_range: bool = False  # a PyTorch-on-CUDA size beyond the checkpoint's trained range (any_size)


def precision_of(backend: str) -> str:
    return {"torch-fp16": "fp16", "torch-bf16": "bf16"}.get(backend, "fp32")


def cell_key(model: str, backend: str, precision: str, graphs: bool, size: tuple[int, int]) -> str:
    return f"{model}|{backend}|{precision}|graphs={'on' if graphs else 'off'}|{format_size(size)}"


def plan_cells(models: list[ModelInfo], sizes: list[tuple[int, int]], backends: list[str] | None,
               graphs: str, avail: Availability,
               any_size: bool = False) -> tuple[list[CellSpec], list[dict[str, Any]]]:
    """(cells to run, skipped-cell records). `graphs`: both | on | off.

    A size outside a model's recorded range is skipped, except with `any_size` for the
    PyTorch backends on CUDA: a checkpoint's range is the trained scale range, not a
    limit of the network (ONNX ranges are what was validated, TensorRT's are the
    engine's profile, and the PyTorch runner used on the CPU enforces the range).
    """
    cells: list[CellSpec] = []
    skipped: list[dict[str, Any]] = []
    for model in models:
        names = backends if backends is not None else default_backends(model)
        for backend in names:
            info = BACKENDS[backend]
            if info.kind != model.kind:
                continue  # --backends lists backends for every model kind; this one is not for this file
            reason = avail.why_not(backend, model)
            device = "cuda" if info.device == "cuda" else ("cpu" if info.device == "cpu" else avail.torch_fp32_device())
            if reason is not None:
                if backends is not None or info.device != "cuda" or avail.device == "cuda":
                    # asked for (by name or --device cuda), or a CPU backend that should have worked: say why not
                    for size in sizes:
                        skipped.append(skip_record(model, backend, size, False, device, reason))
                continue
            graph_modes = [False]
            if info.graphs and device == "cuda":
                graph_modes = {"both": [False, True], "on": [True], "off": [False]}[graphs]
            for size in sizes:
                for graphs_on in graph_modes:
                    outside = not model.metadata.size_in_range(size)
                    floor = model.config.min_size if model.config is not None else 1
                    if outside and not (any_size and model.kind == "pytorch" and device == "cuda"
                                        and min(size) >= floor):
                        hint = " (--any-size lifts this for PyTorch on CUDA)" if model.kind == "pytorch" else ""
                        skipped.append(skip_record(
                            model, backend, size, graphs_on, device,
                            f"size {format_size(size)} is outside the model's range "
                            f"{format_size(model.metadata.min_size)}..{format_size(model.metadata.max_size)}{hint}"))
                        continue
                    cells.append(CellSpec(model, backend, size, graphs_on, device, outside))
    return cells, skipped


def _precision(model: ModelInfo, backend: str) -> str:
    return model.metadata.precision if BACKENDS[backend].kind != "pytorch" else precision_of(backend)


def _base_record(model: ModelInfo, backend: str, size: tuple[int, int], graphs: bool, device: str) -> dict[str, Any]:
    h, w = size
    return {
        "key": cell_key(model.label, backend, _precision(model, backend), graphs, size),
        "model": model.label,
        "backend": backend,
        "runtime": BACKENDS[backend].runtime,
        "precision": _precision(model, backend),
        "cuda_graphs": graphs,
        "device_kind": device,
        "size": {"width": w, "height": h},
        "output_megapixels": round(w * h / 1e6, 6),
    }


def skip_record(model: ModelInfo, backend: str, size: tuple[int, int], graphs: bool, device: str,
                reason: str, status: str = "skipped") -> dict[str, Any]:
    record = _base_record(model, backend, size, graphs, device)
    record.update({"status": status, "reason": reason})
    return record


# --------------------------------------------------------------------------- memory helpers


def _cudart() -> Any:
    from ingan.runtime.trt_engine import import_cudart

    return import_cudart()


def device_used_bytes() -> int | None:
    """Device-wide used memory (total - free) from cudaMemGetInfo, or None without cuda-python/GPU."""
    cudart = _cudart()
    if cudart is None:
        return None
    try:
        err, free, total = cudart.cudaMemGetInfo()
    except Exception:  # noqa: BLE001
        return None
    return int(total) - int(free) if int(err) == 0 else None


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def reset_host_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux `clear_refs` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def host_peak_mib(reset_ok: bool) -> tuple[float | None, str]:
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(kib / 1024, 1), "ru_maxrss (process lifetime peak)"
    return round(kib / 1024, 1), "VmHWM since the cell started" if reset_ok else "VmHWM (process lifetime peak)"


# --------------------------------------------------------------------------- probes


class Probe:
    """One loaded model variant at one size. `step()` serves one request and times it (ms)."""

    timer = "wall-clock"
    math_mode = "fp32"

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.device = "cpu"

    def step(self) -> dict[str, float]:
        raise NotImplementedError

    def memory(self) -> dict[str, Any]:
        return {"device_peak_mib": None, "device_method": None}

    def close(self) -> None:
        pass


def _request_inputs(meta: ModelMetadata) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(image HxWx3 uint8 or None, homography 3x3 or None) a request to this model carries."""
    image = None
    if meta.image_input:
        h, w = meta.training_image_size
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    homography = np.eye(3, dtype=np.float32) if meta.warp else None
    return image, homography


class RunnerProbe(Probe):
    """Any `ingan.runtime` runner, timed with perf_counter (CPU backends, ONNX Runtime on CUDA)."""

    def __init__(self, runner: Any, size: tuple[int, int], gpu: bool, baseline: int | None = None) -> None:
        super().__init__()
        self.runner = runner
        self.size = size
        self.image, self.homography = _request_inputs(runner.metadata)
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
        used = device_used_bytes()
        if used is None or self.baseline is None:
            return {"device_peak_mib": None, "device_method": "unavailable (cuda-python cannot read the GPU)"}
        return {"device_peak_mib": round(max(used - self.baseline, 0) / 2**20, 1),
                "device_method": "cudaMemGetInfo: device-wide used memory after the run minus before loading"}

    def close(self) -> None:
        self.runner.close()


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
        with torch.no_grad():
            y = self.generator(self.image, self.size)
            y = ((y.float() + 1.0) * 0.5 * 255.0).round().clamp(0, 255).to(torch.uint8)
            return y[0].permute(1, 2, 0).contiguous()

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


class TrtProbe(Probe):
    """The session of a TensorRT runner, driven step by step with CUDA events on its stream.

    Without graphs it sets the shapes on the session's main execution context and calls
    `execute_async_v3`, exactly as `TrtEngineSession.run` does; with graphs it launches the
    graph the runner's own CUDA-graph cache captured on the first request (`ingan-run
    --cuda-graphs`), so the numbers are those of the code users run. Each request copies
    its inputs into the session's pinned staging buffers and from there to the device (H2D),
    runs, and copies the output back into pinned memory (D2H), as `run` does.

    TrtEngineSession has no public hook for split timing, so this uses its private members
    (`_NEEDED`, `_NEEDED_FOR_GRAPHS`); tests/bench check they still exist. docs/bench.md
    ("TensorRT session hooks") lists the small public API that would replace them.
    """

    timer = "cuda-events"
    _NEEDED = ("_cudart", "_context", "_stream", "_stream_int", "_bufs", "_set_shapes", "_prepare", "_output_dtype")
    _NEEDED_FOR_GRAPHS = ("_graphs", "_graph_failed")

    def __init__(self, session: Any, size: tuple[int, int], meta: ModelMetadata, graphs: bool,
                 device_name: str, owner: Any = None, baseline: int | None = None) -> None:
        super().__init__()
        from ingan.runtime.trt_engine import _check

        needed = self._NEEDED + (self._NEEDED_FOR_GRAPHS if graphs else ())
        missing = [name for name in needed if not hasattr(session, name)]
        if missing:
            raise InganError(f"this TrtEngineSession lacks {', '.join(missing)}; ingan.bench needs updating")
        self._call = _check  # (result, what) -> value; raises CudaError naming the failed call
        self.session = session
        self.owner = owner  # the runner that owns the session (closed with the probe)
        self.baseline = baseline
        self.meta = meta
        self.device = device_name
        flags = [str(f).upper() for f in (meta.tensorrt or {}).get("flags", [])]
        self.math_mode = "fp16" if meta.precision == "fp16" else ("tf32" if "TF32" in flags else "fp32")
        cudart = self.cudart = session._cudart
        image, homography = _request_inputs(meta)
        image_nchw = None
        if image is not None:
            image_nchw = np.ascontiguousarray(np.transpose(image, (2, 0, 1))[None], dtype=np.float32) / 255.0
        hw, self.arrays = session._prepare(size, image_nchw, None if homography is None else homography[None])
        shapes = {name: tuple(int(d) for d in a.shape) for name, a in self.arrays.items()}
        self.graph_exec = None
        if graphs:
            key = (hw, tuple(sorted(shapes.items())))
            entry = session._graphs.get(key)
            if entry is None:
                if key in session._graph_failed:
                    raise CaptureError("TensorRT could not capture this engine's enqueue into a CUDA graph "
                                       "(the runner fell back to plain enqueues)")
                raise InganError("the runner cached no CUDA graph for this size (was it loaded with cuda_graphs?)")
            self.graph_exec = entry.graph_exec
            self.output_shape = tuple(entry.output_shape)
        else:
            self.output_shape = session._set_shapes(hw, shapes)
        self.out_ptr, capacity, self.out_host = session._bufs["output"]
        self.out_nbytes = int(np.prod(self.output_shape, dtype=np.int64)) * session._output_dtype.itemsize
        if self.out_nbytes > capacity:
            raise InganError(f"output {self.output_shape} does not fit the session's buffer")
        self.h2d_kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.d2h_kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.events = [self._call(cudart.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]

    def request(self) -> np.ndarray:
        return self._run()[1]

    def _run(self) -> tuple[dict[str, float], np.ndarray]:
        from ingan.runtime.base import to_hwc_uint8

        cudart, session, call = self.cudart, self.session, self._call
        stream = session._stream
        ev = self.events
        t0 = time.perf_counter()
        staged = []
        for name, array in self.arrays.items():  # the request's inputs into pinned memory (host work)
            device_ptr, _capacity, host = session._bufs[name]
            host[: array.nbytes] = array.reshape(-1).view(np.uint8)
            staged.append((device_ptr, host.ctypes.data, array.nbytes))
        call(cudart.cudaEventRecord(ev[0], stream), "cudaEventRecord")
        for device_ptr, host_ptr, nbytes in staged:
            call(cudart.cudaMemcpyAsync(device_ptr, host_ptr, nbytes, self.h2d_kind, stream), "cudaMemcpyAsync")
        call(cudart.cudaEventRecord(ev[1], stream), "cudaEventRecord")
        e0 = time.perf_counter()
        if self.graph_exec is not None:
            call(cudart.cudaGraphLaunch(self.graph_exec, stream), "cudaGraphLaunch")
        elif not session._context.execute_async_v3(session._stream_int):
            cudart.cudaStreamSynchronize(stream)
            raise InganError("TensorRT inference failed (see the TensorRT log)")
        e1 = time.perf_counter()
        call(cudart.cudaEventRecord(ev[2], stream), "cudaEventRecord")
        call(cudart.cudaMemcpyAsync(self.out_host.ctypes.data, self.out_ptr, self.out_nbytes, self.d2h_kind, stream),
             "cudaMemcpyAsync")
        call(cudart.cudaEventRecord(ev[3], stream), "cudaEventRecord")
        call(cudart.cudaEventSynchronize(ev[3]), "cudaEventSynchronize")
        raw = self.out_host[: self.out_nbytes].view(session._output_dtype).reshape(self.output_shape).copy()
        result = to_hwc_uint8(raw, self.meta.output_format)
        t1 = time.perf_counter()
        h2d = float(call(cudart.cudaEventElapsedTime(ev[0], ev[1]), "cudaEventElapsedTime"))
        compute = float(call(cudart.cudaEventElapsedTime(ev[1], ev[2]), "cudaEventElapsedTime"))
        d2h = float(call(cudart.cudaEventElapsedTime(ev[2], ev[3]), "cudaEventElapsedTime"))
        sample = {"gpu_compute": compute, "d2h": d2h, "enqueue": (e1 - e0) * 1e3, "host_latency": (t1 - t0) * 1e3}
        if staged:  # a baked-image model without warp has no device inputs: no H2D at all
            sample["h2d"] = h2d
        sample["latency"] = sample.get("h2d", 0.0) + compute + d2h
        return sample, result

    def step(self) -> dict[str, float]:
        return self._run()[0]

    def memory(self) -> dict[str, Any]:
        used = device_used_bytes()
        if used is None or self.baseline is None:
            return {"device_peak_mib": None, "device_method": "unavailable (cudaMemGetInfo failed)"}
        return {"device_peak_mib": round(max(used - self.baseline, 0) / 2**20, 1),
                "device_method": "cudaMemGetInfo: device-wide used memory after the run minus before loading"}

    def close(self) -> None:
        cudart = self.cudart
        try:
            cudart.cudaStreamSynchronize(self.session._stream)
            for event in self.events:
                cudart.cudaEventDestroy(event)
        finally:
            self.events = []
            self.graph_exec = None  # owned by the session's cache, freed when the runner closes
            if self.owner is not None:
                self.owner.close()
            else:
                self.session.close()


class CaptureError(InganError):
    """A CUDA graph could not be captured for this model (the cell is skipped, not failed)."""


# --------------------------------------------------------------------------- opening probes


@dataclass
class Opened:
    probe: Probe
    cold_start: dict[str, Any]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


_IMPORTED: set[str] = set()


def _import_runtime(runtime: str) -> float | None:
    """Import a runtime's packages once per process; the seconds it took the first time, else None."""
    if runtime in _IMPORTED:
        return None
    modules = {"onnxruntime": ["onnxruntime", "ingan.runtime.backends.ort"],
               "pytorch": ["torch", "ingan.runtime.backends.torch_ref"],
               "tensorrt": ["tensorrt" if _importable("tensorrt") else "tensorrt_lean"]}[runtime]
    _IMPORTED.add(runtime)
    if all(name in sys.modules for name in modules):
        return None  # already imported (e.g. torch, to read a checkpoint): nothing left to time
    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - started


def open_probe(spec: CellSpec, allow_host_code: bool = False) -> Opened:
    """Load the model for one cell, serve its first request, and return the ready probe."""
    import ingan.runtime

    backend, model, size = spec.backend, spec.model, spec.size
    runtime = BACKENDS[backend].runtime
    import_s = _import_runtime(runtime)
    cold: dict[str, Any] = {"import_s": import_s, "load_s": None, "first_request_s": None,
                            "graph_capture_s": None, "total_s": None}
    if runtime == "onnxruntime":
        baseline = device_used_bytes() if spec.device == "cuda" else None
        runner, cold["load_s"] = _timed(lambda: ingan.runtime.load(model.path, "onnxruntime",
                                                                   providers=[ORT_PROVIDERS[backend]]))
        try:
            if runner.device != ORT_PROVIDERS[backend]:
                raise InganError(f"ONNX Runtime could not use {ORT_PROVIDERS[backend]} (it fell back to "
                                 f"{runner.device})")
            probe = RunnerProbe(runner, size, gpu=spec.device == "cuda", baseline=baseline)
            _, cold["first_request_s"] = _timed(probe.request)
        except BaseException:
            runner.close()
            raise
        if spec.device == "cuda":
            probe.timer = "wall-clock"
            probe.math_mode = "fp16" if model.metadata.precision == "fp16" else "tf32"
            probe.notes.append("ONNX Runtime on CUDA: wall-clock of the runner call (I/O binding, its own copies "
                               "inside); no CUDA events: ONNX Runtime does not expose its stream")
            if model.metadata.precision != "fp16":
                probe.notes.append("FP32 graph assumed to run with TF32 (ONNX Runtime's CUDA EP and TensorRT "
                                   "enable TF32 by default)")
        else:
            probe.math_mode = model.metadata.precision
    elif runtime == "pytorch":
        probe = _open_torch(spec, cold)
    else:
        probe = _open_tensorrt(spec, cold, allow_host_code)
    parts = [cold[k] for k in ("load_s", "first_request_s", "graph_capture_s") if cold[k] is not None]
    cold["total_s"] = sum(parts)
    for key, value in list(cold.items()):
        if isinstance(value, float):
            cold[key] = round(value, 6)
    return Opened(probe, cold)


def _open_torch(spec: CellSpec, cold: dict[str, Any]) -> Probe:
    import ingan.runtime
    import torch

    if spec.device == "cpu":
        runner, cold["load_s"] = _timed(lambda: ingan.runtime.load(spec.model.path, "pytorch", device="cpu"))
        try:
            probe = RunnerProbe(runner, spec.size, gpu=False)
            _, cold["first_request_s"] = _timed(probe.request)
        except BaseException:
            runner.close()
            raise
        probe.notes.append(f"PyTorch CPU, {torch.get_num_threads()} threads")
        return probe
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    device_name = f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    if spec.backend == "torch-fp32":
        def load_fp32() -> tuple[Any, Any, Any]:
            runner = ingan.runtime.load(spec.model.path, "pytorch", device="cuda")
            return runner, runner.generator, runner.image

        (runner, generator, image), cold["load_s"] = _timed(load_fp32)
        dtype, channels_last = torch.float32, False
        note = "the runner's generator (spectral norm evaluated each forward, as the reference backend runs)"
    else:
        dtype = torch.float16 if spec.backend == "torch-fp16" else torch.bfloat16

        def load_lowp() -> tuple[Any, Any, Any]:
            return None, *_lowp_generator(torch, spec.model.path, dtype)

        (runner, generator, image), cold["load_s"] = _timed(load_lowp)
        channels_last = True
        note = (f"{str(dtype).replace('torch.', '')} weights and activations, channels-last, spectral norm baked "
                "into the weights (as exported)")
    try:
        probe = TorchCudaProbe(torch, generator, image, spec.size, dtype, channels_last, False, device_name)
    except BaseException:
        if runner is not None:
            runner.close()
        raise
    probe.owner = runner
    try:
        _, cold["first_request_s"] = _timed(probe.request)
        if spec.cuda_graphs:
            probe._capture()
            cold["graph_capture_s"] = probe.graph_capture_s
    except BaseException:
        _close_quietly(probe)
        raise
    probe.notes.append(note)
    return probe


def _lowp_generator(torch: Any, path: Path, dtype: Any) -> tuple[Any, Any]:
    """The checkpoint's generator with spectral norm baked in, in `dtype`, channels-last, on CUDA."""
    import dataclasses

    from ingan.model.checkpoint import load_checkpoint
    from ingan.model.generator import Generator
    from ingan.model.layers import baked_state_dict

    ckpt = load_checkpoint(path)
    reference = ckpt.build_generator("cpu")
    baked = Generator(dataclasses.replace(ckpt.generator_config, spectral_norm=False))
    baked.load_state_dict(baked_state_dict(reference), strict=True)
    generator = baked.to("cuda").to(dtype=dtype, memory_format=torch.channels_last).eval()
    pixels = torch.from_numpy(np.ascontiguousarray(ckpt.image)).to("cuda")
    image = pixels.permute(2, 0, 1).unsqueeze(0).float().div(127.5).sub(1.0)
    return generator, image


def _open_tensorrt(spec: CellSpec, cold: dict[str, Any], allow_host_code: bool) -> Probe:
    """Load through `ingan.runtime.load` (TensorRT runner), first request, then time its session."""
    import ingan.runtime

    baseline = device_used_bytes()
    graphs = 1 if spec.cuda_graphs else 0  # the runner's LRU of graphs: one size per cell
    runner, cold["load_s"] = _timed(lambda: ingan.runtime.load(spec.model.path, "tensorrt",
                                                               allow_host_code=allow_host_code, cuda_graphs=graphs))
    try:
        image, homography = _request_inputs(spec.model.metadata)
        _, cold["first_request_s"] = _timed(lambda: runner.retarget(spec.size, homography=homography, image=image))
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


# --------------------------------------------------------------------------- the loop


@dataclass
class Measurement:
    samples: list[dict[str, float]]
    warmup_iterations: int
    warmup_s: float
    wall_s: float
    truncated: bool


def measure(step: Callable[[], dict[str, float]], settings: Settings, deadline: float | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Measurement:
    """Warm up, then time requests until both minimums are met (or the deadline passes)."""
    started = clock()
    warmups = 0
    while True:
        if settings.warmup_iterations is not None:
            if warmups >= settings.warmup_iterations:
                break
        elif settings.warmup_seconds is None or clock() - started >= settings.warmup_seconds:
            break
        if deadline is not None and clock() >= deadline:
            break
        step()
        warmups += 1
    warm_s = clock() - started
    samples: list[dict[str, float]] = []
    truncated = False
    begin = clock()
    while True:
        elapsed = clock() - begin
        if len(samples) >= settings.iterations and elapsed >= settings.duration_s:
            break
        if settings.max_iterations is not None and len(samples) >= settings.max_iterations:
            break
        if deadline is not None and samples and clock() >= deadline:
            truncated = True
            break
        samples.append(step())
    return Measurement(samples, warmups, warm_s, clock() - begin, truncated)


METRICS = ("gpu_compute", "h2d", "d2h", "latency", "host_latency", "enqueue")


def run_cell(spec: CellSpec, settings: Settings, *, deadline: float | None = None, gpu_name: str | None = None,
             peak_override: float | None = None, allow_host_code: bool = False) -> dict[str, Any]:
    """Measure one cell; never raises for a backend problem (the record says what failed)."""
    record = _base_record(spec.model, spec.backend, spec.size, spec.cuda_graphs, spec.device)
    reset_ok = reset_host_peak()
    try:
        opened = open_probe(spec, allow_host_code=allow_host_code)
    except CaptureError as exc:
        record.update({"status": "skipped", "reason": str(exc)})
        return record
    except InganError as exc:
        record.update({"status": "failed", "reason": str(exc)})
        return record
    except Exception as exc:  # noqa: BLE001 - one broken backend must not end the whole run
        log.debug("cell %s failed", record["key"], exc_info=True)
        record.update({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        return record
    probe = opened.probe
    try:
        result = measure(probe.step, settings, deadline)
        memory = probe.memory()
    except Exception as exc:  # noqa: BLE001
        log.debug("cell %s failed while timing", record["key"], exc_info=True)
        record.update({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        _close_quietly(probe)
        return record
    _close_quietly(probe)
    host_mib, host_method = host_peak_mib(reset_ok)
    metrics: dict[str, Any] = {}
    for name in METRICS:
        series = [s[name] for s in result.samples if name in s]
        summary = summarize(series if len(series) == len(result.samples) else None)
        metrics[f"{name}_ms"] = summary.to_dict() if summary else None
    primary = "gpu_compute_ms" if metrics["gpu_compute_ms"] else "latency_ms"
    n = len(result.samples)
    images_per_s = n / result.wall_s if result.wall_s > 0 else None
    megapixels = record["output_megapixels"]
    median_s = metrics[primary]["median"] / 1e3
    model = spec.model
    forward = None
    notes = list(probe.notes)
    if model.config is not None:
        entry = model.entry_executed
        runtime = BACKENDS[spec.backend].runtime
        if entry and runtime in ("onnxruntime", "tensorrt") and not model.metadata.image_input:
            # The entry conv of a baked-image graph has only constant inputs: ONNX Runtime folds it when
            # it creates the session, the TensorRT builder when it builds (docs/export.md; measured for
            # ONNX Runtime in shared/notes/generator-cost.md section 2).
            entry = False
            notes.append("entry conv not counted: constant-folded by the runtime (the training image is baked in)")
        forward = cost_mod.forward_cost(model.config, spec.size, tuple(model.metadata.training_image_size),
                                        entry_executed=entry)
    if spec.outside_range:
        notes.append("size outside the checkpoint's trained range (--any-size)")
    if result.truncated:
        notes.append("stopped early: the time budget ran out (fewer iterations / shorter than asked)")
    record.update({
        "status": "ok",
        "device": probe.device,
        "timer": probe.timer,
        "math": probe.math_mode,
        "primary_metric": primary,
        "iterations": n,
        "warmup": {"iterations": result.warmup_iterations, "seconds": round(result.warmup_s, 6)},
        "total_host_walltime_s": round(result.wall_s, 6),
        "metrics": metrics,
        "throughput": {
            "images_per_s": round(images_per_s, 6) if images_per_s else None,
            "megapixels_per_s": round(images_per_s * megapixels, 6) if images_per_s else None,
        },
        "cold_start": opened.cold_start,
        "memory": {**memory, "host_peak_rss_mib": host_mib, "host_method": host_method},
        "cost": cost_mod.cost_block(forward, median_s, gpu_name if spec.device == "cuda" else None, probe.math_mode,
                                    cpu=spec.device == "cpu", override=peak_override),
        "notes": notes,
    })
    return record


def _close_quietly(probe: Probe) -> None:
    try:
        probe.close()
    except Exception:  # noqa: BLE001 - a teardown error must not hide the measurement
        log.debug("closing the probe failed", exc_info=True)


def run_cells(cells: Iterable[CellSpec], settings: Settings, *, deadline: float | None = None,
              gpu_name: str | None = None, peak_override: float | None = None, allow_host_code: bool = False,
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Run every cell in order; cells that would start after `deadline` are recorded as skipped."""
    records = []
    cells = list(cells)
    for index, spec in enumerate(cells, 1):
        if deadline is not None and time.perf_counter() >= deadline:
            records.append(skip_record(spec.model, spec.backend, spec.size, spec.cuda_graphs, spec.device,
                                       "time budget spent before this cell started"))
            continue
        if progress:
            progress(f"[{index}/{len(cells)}] {spec.model.label} {spec.backend} "
                     f"{'graphs ' if spec.cuda_graphs else ''}{format_size(spec.size)}")
        record = run_cell(spec, settings, deadline=deadline, gpu_name=gpu_name, peak_override=peak_override,
                          allow_host_code=allow_host_code)
        if progress and record["status"] != "ok":
            progress(f"  {record['status']}: {record['reason']}")
        records.append(record)
    return records

