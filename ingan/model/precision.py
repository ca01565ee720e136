"""Half precision on the CPU: never run it, emulate it.

On CPUs without native FP16/BF16 matrix units (AVX2-only AMD EPYC, older Intel Xeons) torch's
float16 and bfloat16 convolutions fall back to slow generic code: a 3x3, 64->64 channel
convolution at 64x64 took 24 ms in float32 (12.4 GFLOP/s) and 2.5 s in float16 (0.12 GFLOP/s)
on a 2-core AMD EPYC with torch 2.13, about 100x slower. CPUs with AVX-512 FP16 or AMX are
fast, so a check that passes on one machine can hang on another. The rule, for every product
path: real half precision only on CUDA; on a CPU either refuse with one line or emulate it
with `HalfEmulation` (float32 speed). tests/model/test_precision.py holds the guard that
fails any test in which a half-precision convolution executes on the CPU.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

HALF_DTYPES = (torch.float16, torch.bfloat16)


def round_through(tensor: torch.Tensor, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """`tensor` rounded to the nearest value `dtype` can hold, kept in its own dtype."""
    return tensor.to(dtype).to(tensor.dtype)


class HalfEmulation(TorchFunctionMode):
    """Within this mode every float32 tensor an operation returns is rounded through `dtype`.

    Each torch function (a convolution, a norm, an activation, an addition) then computes in
    float32 on values that `dtype` can represent, and its result is stored as `dtype` would
    store it: the numerics of a graph whose tensors are all FP16, at float32 speed. Nested
    calls inside one function are not intercepted (the mode is off while it handles a call),
    so a normalisation is one FP32 operation, as in the exported graph. Weights must be
    rounded beforehand (`round_parameters_`); inputs are rounded by the caller.
    """

    def __init__(self, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        self.dtype = dtype

    def _round(self, value: object) -> object:
        if isinstance(value, torch.Tensor) and value.dtype == torch.float32:
            return round_through(value, self.dtype)
        return value

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.endswith("__") and isinstance(out, torch.Tensor):
            # In-place operation: round the written tensor itself, keep its identity.
            if out.dtype == torch.float32:
                out.copy_(out.to(self.dtype))
            return out
        return tree_map(self._round, out)


@torch.no_grad()
def round_parameters_(module: torch.nn.Module, dtype: torch.dtype = torch.float16) -> torch.nn.Module:
    """Round every float32 parameter of `module` through `dtype`, in place; returns `module`."""
    for parameter in module.parameters():
        if parameter.dtype == torch.float32:
            parameter.copy_(round_through(parameter, dtype))
    return module


class HalfOnCpuGuard:
    """Context manager that raises when a half-precision convolution or matrix product runs
    on the CPU (a TorchDispatchMode sees every kernel call, whatever module issued it).

    For tests and for debugging a slow path on a user's machine; `seen` lists what ran.
    """

    MATRIX_OPS = ("mm", "bmm", "addmm", "baddbmm", "matmul", "mv", "addmv", "dot", "linear")

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._mode = None

    def __enter__(self) -> "HalfOnCpuGuard":
        from torch.utils._python_dispatch import TorchDispatchMode

        guard = self

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                name = func.overloadpacket.__name__.lstrip("_")
                if ("conv" in name and "convert" not in name) or name in guard.MATRIX_OPS:
                    for value in tree_flatten_tensors((args, kwargs or {})):
                        if value.device.type == "cpu" and value.dtype in HALF_DTYPES:
                            guard.seen.append(f"{func} ({value.dtype})")
                            raise RuntimeError(f"half-precision {func} on the CPU ({value.dtype}): see "
                                               "ingan/model/precision.py")
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._mode is not None
        self._mode.__exit__(*exc)


def tree_flatten_tensors(tree: object) -> list[torch.Tensor]:
    from torch.utils._pytree import tree_leaves

    return [leaf for leaf in tree_leaves(tree) if isinstance(leaf, torch.Tensor)]
