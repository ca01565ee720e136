"""Serving: load an exported model and retarget. Importing this never imports torch.

    import ingan.runtime
    with ingan.runtime.load("model.onnx") as runner:       # or model.plan, ckpt.pt
        image = runner.retarget((360, 640))                # (height, width) -> HxWx3 uint8

Backends are chosen by file suffix (.plan/.engine -> TensorRT, .onnx -> ONNX Runtime,
.pt -> PyTorch reference) or by `backend=`; each imports its own heavy package only when
chosen, and a missing package raises an error naming the pip extra.
"""

from __future__ import annotations

import os
from typing import Sequence

from ingan.errors import ConfigError
from ingan.fsutil import MODEL_FILES, existing_file
from ingan.runtime import registry
from ingan.runtime.base import Runner
from ingan.runtime.registry import LoadOptions, backend_for

__all__ = ["LoadOptions", "Runner", "backend_for", "load"]

# What each LoadOptions field is called on the command line (for the refusals below).
_FLAGS = {"providers": "--provider", "allow_host_code": "--allow-host-code", "cuda_graphs": "--cuda-graphs",
          "threads": "--threads"}


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
        path: a model file: `.plan`/`.engine` (TensorRT), `.onnx` (ONNX Runtime; its `.json`
            sidecar next to it) or `ckpt.pt` (PyTorch), or the suffix of any other registered
            backend (ingan/runtime/registry.py).
        backend: a backend name or alias instead of the suffix-based choice.
        device: auto, cpu, cuda or cuda:N (ONNX Runtime, PyTorch); a .plan always runs on CUDA.
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
    cls = registry.runner_class(backend_for(model, backend))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ConfigError(f"threads must be a whole number >= 0 (0 = the library's default), got {threads!r}")
    options = LoadOptions(device=device, providers=tuple(providers or ()), allow_host_code=allow_host_code,
                          cuda_graphs=cuda_graphs, threads=threads)
    for name in options.given():
        if name not in cls.takes:
            takers = [c.backend for c in registry.runners().values() if name in c.takes]
            raise ConfigError(f"{_FLAGS.get(name, name)} applies to the {', '.join(takers)} backend(s), not to "
                              f"{cls.backend} ({model.name}); drop it for this model")
    return cls.open(model, options)
