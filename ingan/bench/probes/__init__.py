"""Probes: one loaded model variant at one size per cell, whose `step()` serves one request
and times it. `open_probe` loads the cell's model and serves its first request (the cold start).

How each backend is timed (field meanings in docs/bench.md):

- TensorRT (`.plan`, `trt`): on the session's own stream, CUDA events around the H2D copies
  of the real inputs (from pinned memory), around `execute_async_v3` or the CUDA-graph
  launch (GPU Compute Time), and around the D2H copy of the output into pinned memory;
  the host time of the enqueue call is the Enqueue Time. Graph capture follows trtexec:
  one plain enqueue, then capture of one enqueue on the stream.
- PyTorch on CUDA (`pytorch`): the same events on a dedicated torch stream around the forward
  (or `CUDAGraph.replay`) and around the copy into a pinned host tensor.
- ONNX Runtime on CUDA (`runner`): wall-clock of the runner call (ONNX Runtime hides its
  stream, so there is nothing to put events on); its copies are inside that time.
- CPU (ONNX Runtime CPU, PyTorch CPU; `runner`): `time.perf_counter` around the backend call
  (`runner.last_timing`) and around the whole `runner.retarget`.
- Any other registered backend (`runner`, the default kind): the same, through the Runner contract.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from typing import Any

from ingan.bench.models import CellSpec, bench_backends, importable
from ingan.bench.probes.base import Probe
from ingan.bench.probes.pytorch import open_pytorch
from ingan.bench.probes.runner import open_runner
from ingan.bench.probes.trt import open_tensorrt

__all__ = ["Opened", "open_probe"]


@dataclass
class Opened:
    probe: Probe
    cold_start: dict[str, Any]


_IMPORTED: set[str] = set()
# How each probe kind opens a cell; a backend's variant names its kind (ingan/runtime/registry.py).
OPENERS = {"runner": open_runner, "pytorch": open_pytorch}


def _import_runtime(cls: Any) -> float | None:
    """Import a backend's packages once per process; the seconds it took the first time, else None."""
    if cls.backend in _IMPORTED:
        return None
    _IMPORTED.add(cls.backend)
    modules = [cls.__module__, *cls.packages]
    if cls.backend == "tensorrt" and not importable("tensorrt"):
        modules = [cls.__module__, "tensorrt_lean"]
    modules = [name for name in modules if importable(name)]
    if all(name in sys.modules for name in modules):
        return None  # already imported (e.g. torch, to read a checkpoint): nothing left to time
    started = time.perf_counter()
    for name in modules:
        importlib.import_module(name)
    return time.perf_counter() - started


def open_probe(spec: CellSpec, allow_host_code: bool = False) -> Opened:
    """Load the model for one cell, serve its first request, and return the ready probe."""
    importlib.import_module("ingan.runtime")  # ours: imported before the runtime's packages are timed

    cls, variant = bench_backends()[spec.backend]
    import_s = _import_runtime(cls)
    cold: dict[str, Any] = {"import_s": import_s, "load_s": None, "first_request_s": None,
                            "graph_capture_s": None, "total_s": None}
    if variant.probe == "tensorrt":
        probe = open_tensorrt(spec, cold, allow_host_code)
    else:
        probe = OPENERS.get(variant.probe, open_runner)(spec, cold)
    parts = [cold[k] for k in ("load_s", "first_request_s", "graph_capture_s") if cold[k] is not None]
    cold["total_s"] = sum(parts)
    for key, value in list(cold.items()):
        if isinstance(value, float):
            cold[key] = round(value, 6)
    return Opened(probe, cold)
