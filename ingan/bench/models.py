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
from ingan.runtime import registry
from ingan.runtime.registry import BenchVariant
from ingan.errors import ConfigError, InganError
from ingan.extras import install_hint
from ingan.fsutil import MODEL_FILES, existing_file
from ingan.metadata import ModelMetadata
from ingan.sizes import format_size

# --------------------------------------------------------------------------- backends
# The bench's backends are the variants the runtime's backends declare (ingan/runtime/registry.py):
# a new backend file shows up here, timed through the Runner contract, without editing this module.


def bench_backends() -> dict[str, tuple[Any, BenchVariant]]:
    """ingan-bench backend name -> (runner class, variant)."""
    return registry.bench_variants()


def variant(name: str) -> BenchVariant:
    return bench_backends()[name][1]


def runner_of(name: str) -> str:
    """The runtime backend (registry name) a bench backend runs on."""
    return bench_backends()[name][0].backend


def parse_backends(text: str | Sequence[str] | None) -> list[str] | None:
    """'ort-cpu,torch-fp32' -> names; None/'' -> None (everything available); unknown -> ConfigError."""
    if text is None:
        return None
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    if not items or items == ["all"]:
        return None
    table = bench_backends()
    unknown = [t for t in items if t not in table]
    if unknown:
        raise ConfigError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(table)} (or all)")
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- models


@dataclass
class ModelInfo:
    """A model file checked before any timing: kind, metadata, analytic-cost config."""

    path: Path
    label: str
    kind: str  # the metadata kind: onnx | tensorrt | pytorch | another backend's
    metadata: ModelMetadata
    config: Any = None  # GeneratorConfig or None
    entry_executed: bool = True
    runner: str = ""  # the runtime backend that opens it (registry name)

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
    cls = registry.runner_class(registry.backend_for(p))
    try:
        with open(p, "rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise InganError(f"cannot read model '{p}': {exc.strerror or exc}") from None
    meta = cls.describe(p)  # a sidecar, or the file itself (checkpoints need torch: a clear error otherwise)
    kind = meta.kind
    if kind == "pytorch":
        from ingan.model.checkpoint import load_checkpoint

        return ModelInfo(p, p.name, kind, meta, load_checkpoint(p).generator_config, True, cls.backend)
    sibling = (meta.tensorrt or {}).get("onnx") if kind == "tensorrt" else None
    found = cost_mod.model_config_for(p, kind, sibling)
    config, entry = found if found else (None, True)
    return ModelInfo(p, p.name, kind, meta, config, entry, cls.backend)


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
    """What this machine can run; each backend's answer is cached (some import big packages)."""

    device: str = "auto"  # auto | cpu | cuda
    _cache: dict[str, Any] = field(default_factory=dict)

    def _memo(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def torch_cuda(self) -> bool:
        def read() -> bool:
            if not importable("torch"):
                return False
            import torch

            return bool(torch.cuda.is_available())
        return self._memo("torch_cuda", read)

    def why_not(self, backend: str, model: ModelInfo) -> str | None:
        """None if `backend` can run `model` here, else the reason (for a skipped cell)."""
        cls, info = bench_backends()[backend]
        if cls.backend != model.runner:
            return f"{backend} runs {cls.backend} models ({'/'.join(cls.suffixes)}), not {model.path.suffix}"
        if self.device == "cpu" and info.device == "cuda":
            return f"{backend} needs CUDA (--device cpu)"
        if self.device == "cuda" and info.device == "cpu":
            return f"{backend} runs on the CPU (--device cuda)"
        return self._memo(f"why:{backend}", lambda: cls.why_unavailable(
            BenchVariant(info.name, "cuda", info.description, info.graphs, info.provider, info.precision, info.probe)
            if self.device == "cuda" and info.device == "auto" else info))

    def device_of(self, info: BenchVariant) -> str:
        """Where a variant runs here: its own device, or for `auto` CUDA when torch sees one."""
        if info.device != "auto":
            return info.device
        if self.device in ("cpu", "cuda"):
            return self.device
        return "cuda" if self.torch_cuda() else "cpu"


def default_backends(model: ModelInfo) -> list[str]:
    return [name for name, (cls, _) in bench_backends().items() if cls.backend == model.runner]


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
            cls, info = bench_backends()[backend]
            if cls.backend != model.runner:
                continue  # --backends lists backends for every model kind; this one is not for this file
            reason = avail.why_not(backend, model)
            device = avail.device_of(info)
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
    """A variant's fixed precision (PyTorch fp16/bf16), else the model file's own."""
    return variant(backend).precision or model.metadata.precision


def base_record(model: ModelInfo, backend: str, size: tuple[int, int], graphs: bool, device: str) -> dict[str, Any]:
    """The fields every cell record starts with: its key and what the cell is."""
    h, w = size
    return {
        "key": cell_key(model.label, backend, _precision(model, backend), graphs, size),
        "model": model.label,
        "backend": backend,
        "runtime": runner_of(backend),
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
