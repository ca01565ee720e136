"""Serving: load an exported model and retarget. Importing this never imports torch.

    import ingan.runtime
    with ingan.runtime.load("model.onnx") as runner:       # or model.plan, ckpt.pt
        image = runner.retarget((360, 640))                # (height, width) -> HxWx3 uint8

Backends are chosen by file suffix (.plan/.engine -> TensorRT, .onnx -> ONNX Runtime,
.pt -> PyTorch reference) or by `backend=`; each imports its own heavy package only when
chosen, and a missing package raises an error naming the pip extra.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Sequence

from ingan.errors import ConfigError, InganError
from ingan.runtime.base import Runner

__all__ = ["BACKENDS", "Runner", "backend_for", "load"]

# backend name -> (module path, class name); modules load lazily.
BACKENDS: dict[str, tuple[str, str]] = {
    "tensorrt": ("ingan.runtime.backends.trt", "TrtRunner"),
    "onnxruntime": ("ingan.runtime.backends.ort", "OrtRunner"),
    "pytorch": ("ingan.runtime.backends.torch_ref", "TorchRunner"),
}
ALIASES = {"trt": "tensorrt", "tensorrt": "tensorrt", "ort": "onnxruntime", "onnx": "onnxruntime",
           "onnxruntime": "onnxruntime", "torch": "pytorch", "pytorch": "pytorch", "pt": "pytorch"}
SUFFIXES = {".plan": "tensorrt", ".engine": "tensorrt", ".onnx": "onnxruntime", ".pt": "pytorch", ".pth": "pytorch"}


def backend_for(path: str | os.PathLike[str], backend: str | None = None) -> str:
    """The backend name for a model file (by suffix unless `backend` is given)."""
    suffix = Path(path).suffix.lower()
    if backend is not None:
        name = ALIASES.get(backend.lower())
        if name is None:
            raise ConfigError(f"unknown backend '{backend}'; use tensorrt, onnxruntime or pytorch")
        expected = SUFFIXES.get(suffix)
        if expected is not None and expected != name:
            raise ConfigError(f"backend {name} cannot run a '{suffix}' file (it is for the {expected} backend)")
        return name
    if suffix not in SUFFIXES:
        raise ConfigError(
            f"cannot tell the model type of '{Path(path).name}' from its suffix; use .plan/.engine "
            "(TensorRT), .onnx (ONNX Runtime) or .pt (PyTorch checkpoint), or pass --backend"
        )
    return SUFFIXES[suffix]


def load(
    path: str | os.PathLike[str],
    backend: str | None = None,
    *,
    device: str | None = None,
    providers: Sequence[str] | None = None,
    allow_host_code: bool = False,
    cuda_graphs: int = 0,
    threads: int = 0,
) -> Runner:
    """Open a model for serving.

    Args:
        path: `.plan`/`.engine`, `.onnx` (with its `.json` sidecar next to it) or `ckpt.pt`.
        backend: override the suffix-based choice (tensorrt, onnxruntime, pytorch).
        device: "cpu" or "cuda[:N]" (ONNX Runtime, PyTorch); a .plan always runs on CUDA.
        providers: ONNX Runtime providers in priority order (default: TensorRT EP, CUDA EP,
            CPU, whichever this onnxruntime has).
        allow_host_code: required to load a version-compatible TensorRT plan (it embeds
            host code: only for plans you trust).
        cuda_graphs: TensorRT only: keep up to N CUDA graphs, one per recently used size
            (an LRU); repeated sizes then launch one graph instead of many kernels.
        threads: ONNX Runtime only: intra-op threads per model (0: ONNX Runtime's default, one
            per physical core); a server holding several models sets it to its CPU share.
    """
    model = Path(path)
    if not model.exists():
        raise InganError(f"model '{model}' does not exist; check the path")
    if not model.is_file():
        raise InganError(f"'{model}' is not a file; pass a .plan, .onnx or .pt model file")
    name = backend_for(model, backend)
    module_path, class_name = BACKENDS[name]
    module = importlib.import_module(module_path)
    cls: Any = getattr(module, class_name)
    if cuda_graphs and name != "tensorrt":
        raise ConfigError("CUDA graphs (--cuda-graphs) are a TensorRT backend option; drop it for this model")
    if name == "pytorch":
        return cls(model, device=device)
    from ingan.runtime.sidecar import read_sidecar

    metadata = read_sidecar(model, expected_kind="tensorrt" if name == "tensorrt" else "onnx")
    if name == "onnxruntime":
        return cls(model, metadata, providers=providers, device=device, threads=threads)
    return cls(model, metadata, allow_host_code=allow_host_code, device=device, cuda_graphs=cuda_graphs)
