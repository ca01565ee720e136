"""CUDA runtime helpers over cuda-python (no torch): find the bindings, check calls, query the GPU.

Used by the TensorRT session (whose buffers `CudaMemory` owns), the engine builder, the TensorRT backend, the bench's probes and
environment report, and benchmarks/gpu_check.py. Importing this module imports nothing heavy:
cuda-python is looked up only when a function needs it.
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import Any

import numpy as np

from ingan.errors import InganError
from ingan.extras import missing


class CudaError(InganError):
    """A CUDA runtime call failed (out of memory, driver problem, ...)."""


def import_cudart() -> ModuleType | None:
    """The CUDA runtime bindings of cuda-python, or None when cuda-python is missing.

    cuda-bindings 13 removed the old `cuda.cudart` module; 12.x (before 12.6) only has it.
    https://nvidia.github.io/cuda-python/cuda-bindings/latest/release/13.0.0-notes.html
    """
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]  # cuda-python 12.x
        except ImportError:
            return None
    return cudart


def error_name(err: Any) -> str:
    """A cudaError_t as its name (e.g. cudaErrorMemoryAllocation)."""
    return str(getattr(err, "name", err))


def check_cuda(result: Any, what: str) -> Any:
    """Unpack cuda-python's `(err, *values)` tuple; raise CudaError naming the error.

    Returns None, the single value, or a tuple of values.
    """
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:  # cudaSuccess == 0; cuda-bindings enums are int subclasses
        raise CudaError(f"CUDA call {what} failed: {error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def cuda_device_status() -> tuple[bool, str]:
    """(True, "") if cuda-python sees at least one GPU, else (False, why). Never imports torch."""
    cudart = import_cudart()
    if cudart is None:
        return False, "cuda-python is not installed"
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0:
        return False, f"no CUDA GPU found (cudaGetDeviceCount: {error_name(err)})"
    if count < 1:
        return False, "no CUDA GPU found (cudaGetDeviceCount: 0 devices)"
    return True, ""


def cuda_device_info() -> tuple[str, str]:
    """(name, "major.minor") of the current CUDA device: what a plan is tied to."""
    cudart = import_cudart()
    if cudart is None:
        raise missing("cuda.bindings", "Querying the GPU")
    device = check_cuda(cudart.cudaGetDevice(), "cudaGetDevice")
    props = check_cuda(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(name), f"{props.major}.{props.minor}"


def stream_handle(stream: Any) -> int:
    """The integer handle TensorRT wants; `int(stream)` is deprecated in cuda-bindings 13."""
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(stream)
    return int(get_cuda_native_handle(stream))


def is_null_handle(handle: Any) -> bool:
    """True for None or a NULL cuda-python handle (cudaGraph_t, cudaGraphExec_t, ...)."""
    if handle is None:
        return True
    try:
        return stream_handle(handle) == 0  # get_cuda_native_handle works for any handle type
    except (TypeError, ValueError):
        return False


class CudaMemory:
    """Device and pinned host memory that one owner allocates piecemeal and frees at once."""

    def __init__(self, cudart: ModuleType) -> None:
        self._cudart = cudart
        self._device_ptrs: list[int] = []
        self._host_ptrs: list[int] = []

    def device(self, nbytes: int, what: str) -> int:
        """A device allocation of `nbytes`, freed by `free_all`."""
        device_ptr = check_cuda(self._cudart.cudaMalloc(nbytes), f"cudaMalloc({what}, {nbytes} bytes)")
        self._device_ptrs.append(device_ptr)
        return device_ptr

    def pinned(self, nbytes: int, what: str, dtype: np.dtype | None = None,
               owned: bool = True) -> tuple[int, np.ndarray]:
        """Pinned host memory (truly async copies) as a numpy view; freed by `free_all` when
        `owned`, else by the caller (cudaFreeHost)."""
        host_ptr = check_cuda(self._cudart.cudaMallocHost(nbytes), f"cudaMallocHost({what}, {nbytes} bytes)")
        if owned:
            self._host_ptrs.append(host_ptr)
        view = np.frombuffer((ctypes.c_ubyte * nbytes).from_address(host_ptr), dtype=np.uint8)
        return host_ptr, (view if dtype is None else view.view(dtype))

    def free_all(self) -> list[str]:
        """Free everything (newest first, device memory before host memory); the CUDA errors."""
        errors: list[str] = []

        def attempt(result: Any, what: str) -> None:
            try:
                check_cuda(result, what)
            except CudaError as exc:
                errors.append(str(exc))

        while self._device_ptrs:
            attempt(self._cudart.cudaFree(self._device_ptrs.pop()), "cudaFree")
        while self._host_ptrs:
            attempt(self._cudart.cudaFreeHost(self._host_ptrs.pop()), "cudaFreeHost")
        return errors
