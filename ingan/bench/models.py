"""What the bench can measure: its backends, the model files, what this machine can run, and
the cells (model x backend x precision x CUDA graphs x output size) with their report records.

Reading a model here never loads it into a runtime (cold starts stay cold); only a checkpoint
needs torch to be read.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ingan.bench import cost as cost_mod
from ingan.errors import ConfigError, InganError
from ingan.extras import install_hint
from ingan.fsutil import MODEL_FILES, existing_file
from ingan.metadata import ModelMetadata
from ingan.sizes import format_size

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
    p = existing_file(path, "model", MODEL_FILES)
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


def importable(name: str) -> bool:
    """Whether `name` can be imported (looked up, not imported)."""
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
            if not importable("onnxruntime"):
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
            if not importable("torch"):
                return False
            import torch

            return bool(torch.cuda.is_available())
        return self._memo("torch_cuda", read)

    def tensorrt(self) -> tuple[bool, str]:
        if not (importable("tensorrt") or importable("tensorrt_lean")):
            return False, (f"neither 'tensorrt' nor 'tensorrt_lean' is installed ({install_hint('tensorrt')}, or "
                           f"{install_hint('tensorrt_lean')} for --version-compatible plans)")
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
                return f"onnxruntime is not installed ({install_hint('onnxruntime')}; on a GPU {install_hint('cuda.bindings')})"
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
                why = f"{backend} needs a CUDA GPU and a CUDA build of torch"
                if precision_of(backend) != "fp32":
                    why += ("; half precision never runs on a CPU (~100x slower than FP32 without FP16/BF16 "
                            "matrix units; docs/export.md)")
                return why
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
    threads: int = 0  # CPU threads per request (ONNX Runtime / PyTorch on the CPU); 0: the library's default


def precision_of(backend: str) -> str:
    return {"torch-fp16": "fp16", "torch-bf16": "bf16"}.get(backend, "fp32")


def cell_key(model: str, backend: str, precision: str, graphs: bool, size: tuple[int, int]) -> str:
    return f"{model}|{backend}|{precision}|graphs={'on' if graphs else 'off'}|{format_size(size)}"


def plan_cells(models: list[ModelInfo], sizes: list[tuple[int, int]], backends: list[str] | None,
               graphs: str, avail: Availability,
               any_size: bool = False, threads: int = 0) -> tuple[list[CellSpec], list[dict[str, Any]]]:
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
                    cells.append(CellSpec(model, backend, size, graphs_on, device, outside,
                                          threads if device == "cpu" else 0))
    return cells, skipped


def _precision(model: ModelInfo, backend: str) -> str:
    return model.metadata.precision if BACKENDS[backend].kind != "pytorch" else precision_of(backend)


def base_record(model: ModelInfo, backend: str, size: tuple[int, int], graphs: bool, device: str) -> dict[str, Any]:
    """The fields every cell record starts with: its key and what the cell is."""
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
    record = base_record(model, backend, size, graphs, device)
    record.update({"status": status, "reason": reason})
    return record
