"""The environment block of a report: what ran where, read without importing heavy packages.

Package versions come from installed-distribution metadata (`importlib.metadata`), so
reading torch's version never imports torch. GPU facts come from NVML (`pynvml`, as
installed by `nvidia-ml-py`) when it is importable, else from cuda-python, else they are
left out; clocks are read only through NVML. The git SHA is read with `git rev-parse`
(an argv list, never a shell).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import ingan

log = logging.getLogger(__name__)

# distribution names to report, by role; the first installed one of each group wins.
_PACKAGES: dict[str, tuple[str, ...]] = {
    "ingan": ("ingan",),
    "numpy": ("numpy",),
    "torch": ("torch",),
    "onnxruntime": ("onnxruntime-gpu", "onnxruntime"),
    "onnx": ("onnx",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"),
    "tensorrt_lean": ("tensorrt-lean-cu13", "tensorrt-lean-cu12", "tensorrt-lean"),
    "cuda_bindings": ("cuda-bindings", "cuda-python"),
    "nvidia_ml_py": ("nvidia-ml-py", "pynvml"),
    "matplotlib": ("matplotlib",),
}


def package_versions() -> dict[str, str | None]:
    """{role: version or None}, without importing any of them."""
    versions: dict[str, str | None] = {}
    for role, names in _PACKAGES.items():
        versions[role] = None
        for name in names:
            try:
                versions[role] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    if versions["ingan"] is None:
        versions["ingan"] = ingan.__version__
    return versions


def cpu_model() -> str:
    """'model name' from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_info(start: Path | None = None) -> dict[str, Any]:
    """{sha, dirty} of the repository holding the ingan package (None where there is none)."""
    root = start or Path(ingan.__file__).resolve().parent.parent
    info: dict[str, Any] = {"sha": None, "dirty": None}
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10,
                             check=False)
        if sha.returncode != 0:
            return info
        info["sha"] = sha.stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10, check=False)
        if status.returncode == 0:
            info["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _decode(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def nvml_gpus() -> list[dict[str, Any]] | None:
    """Per-GPU facts from NVML, or None when pynvml is missing or NVML cannot start."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - no driver: nothing to report
        log.debug("NVML unavailable: %s", exc)
        return None
    gpus: list[dict[str, Any]] = []
    try:
        driver = _decode(pynvml.nvmlSystemGetDriverVersion())
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            gpu: dict[str, Any] = {"index": index, "name": _decode(pynvml.nvmlDeviceGetName(handle)),
                                   "driver": driver}

            def read(key: str, fn: Any, *args: Any, scale: float = 1.0) -> None:
                try:
                    value = fn(handle, *args)
                    gpu[key] = value * scale if isinstance(value, (int, float)) and scale != 1.0 else value
                except Exception:  # noqa: BLE001 - not every GPU / driver exposes every field
                    gpu[key] = None

            clock = pynvml.NVML_CLOCK_SM
            mem = pynvml.NVML_CLOCK_MEM
            read("sm_clock_mhz", pynvml.nvmlDeviceGetClockInfo, clock)
            read("sm_clock_max_mhz", pynvml.nvmlDeviceGetMaxClockInfo, clock)
            read("mem_clock_mhz", pynvml.nvmlDeviceGetClockInfo, mem)
            read("mem_clock_max_mhz", pynvml.nvmlDeviceGetMaxClockInfo, mem)
            read("power_limit_w", pynvml.nvmlDeviceGetPowerManagementLimit, scale=1e-3)
            read("temperature_c", pynvml.nvmlDeviceGetTemperature, pynvml.NVML_TEMPERATURE_GPU)
            try:
                memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
                gpu["memory_total_mib"] = round(memory.total / 2**20, 1)
            except Exception:  # noqa: BLE001
                gpu["memory_total_mib"] = None
            try:
                gpu["compute_capability"] = "%d.%d" % pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            except Exception:  # noqa: BLE001
                gpu["compute_capability"] = None
            gpus.append(gpu)
    except Exception as exc:  # noqa: BLE001
        log.debug("NVML query failed: %s", exc)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
    return gpus


def cuda_runtime_info() -> dict[str, Any] | None:
    """Driver/runtime CUDA versions and the current device via cuda-python, or None without a GPU."""
    from ingan.runtime.cuda import cuda_device_info, cuda_device_status, import_cudart

    ok, _why = cuda_device_status()
    if not ok:
        return None
    cudart = import_cudart()
    info: dict[str, Any] = {}
    try:
        err, driver = cudart.cudaDriverGetVersion()
        if int(err) == 0:
            info["cuda_driver_api"] = f"{driver // 1000}.{driver % 1000 // 10}"
        err, runtime = cudart.cudaRuntimeGetVersion()
        if int(err) == 0:
            info["cuda_runtime"] = f"{runtime // 1000}.{runtime % 1000 // 10}"
        name, capability = cuda_device_info()
        info["name"] = name
        info["compute_capability"] = capability
    except Exception as exc:  # noqa: BLE001
        log.debug("cuda-python query failed: %s", exc)
    return info


def environment(with_gpu: bool = True) -> dict[str, Any]:
    """The report's `environment` object (see docs/bench.md)."""
    env: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu": {"model": cpu_model(), "logical_cores": os.cpu_count()},
        "packages": package_versions(),
        "git": git_info(),
        "gpu": None,
        "cuda": None,
    }
    if with_gpu:
        gpus = nvml_gpus()
        cuda = cuda_runtime_info()
        env["cuda"] = cuda
        if gpus:
            env["gpu"] = gpus[0] if len(gpus) == 1 else {**gpus[0], "all": gpus}
        elif cuda and cuda.get("name"):
            env["gpu"] = {"index": 0, "name": cuda["name"], "compute_capability": cuda.get("compute_capability"),
                          "driver": None, "note": "NVML not available (pip install nvidia-ml-py): no clocks"}
    return env


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def gpu_name(env: dict[str, Any]) -> str | None:
    gpu = env.get("gpu") or {}
    return gpu.get("name")
