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

from ingan.errors import ConfigError
from ingan.fsutil import MODEL_FILES, existing_file
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
            f"cannot tell the model type of '{Path(path).name}' from its suffix; rename it to .plan/.engine "
            "(TensorRT), .onnx (ONNX Runtime) or .pt (PyTorch checkpoint), or name the backend (ingan-run "
            "--backend, ingan.runtime.load(backend=...))"
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
        threads: CPU threads for one request (ONNX Runtime's intra-op threads; PyTorch's
            `torch.set_num_threads`, which is process-wide); 0 = the library's default (ONNX
            Runtime: one per physical core). Lower it when several runners or replicas share
            a machine. Not for TensorRT plans (they compute on the GPU).
    """
    model = existing_file(path, "model", MODEL_FILES)
    name = backend_for(model, backend)
    module_path, class_name = BACKENDS[name]
    module = importlib.import_module(module_path)
    cls: Any = getattr(module, class_name)
    if cuda_graphs and name != "tensorrt":
        raise ConfigError("CUDA graphs (--cuda-graphs) are a TensorRT backend option; drop it for this model")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ConfigError(f"threads must be a whole number >= 0 (0 = the library's default), got {threads!r}")
    if threads and name == "tensorrt":
        raise ConfigError("threads (--threads) set CPU threads for ONNX Runtime and PyTorch; a TensorRT plan runs "
                          "on the GPU: drop it for this model")
    if name == "pytorch":
        return cls(model, device=device, threads=threads)
    from ingan.runtime.sidecar import read_sidecar

    metadata = read_sidecar(model, expected_kind="tensorrt" if name == "tensorrt" else "onnx")
    if name == "onnxruntime":
        return cls(model, metadata, providers=providers, device=device, threads=threads)
    return cls(model, metadata, allow_host_code=allow_host_code, device=device, cuda_graphs=cuda_graphs)
