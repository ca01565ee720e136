"""Which pip extra brings which optional package: the one home of every install hint.

Each hint names the smallest extra that fixes the problem (a serving box must never be sent
to an extra that pulls torch). tests/test_extras.py checks every entry against
pyproject.toml: the extra exists and lists the package. No heavy import here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ingan.errors import MissingDependencyError

# NVIDIA's package index: the `tensorrt` packages on PyPI are stubs that download from it at
# install time, so `ingan[gpu]` resolves only with it (https://docs.nvidia.com/deeplearning/
# tensorrt/latest/installing-tensorrt/installing.html, "Python Package Index Installation").
NVIDIA_INDEX = "https://pypi.nvidia.com"


@dataclass(frozen=True)
class OptionalPackage:
    """An optional package: its import name, its PyPI name, and the smallest extra with it."""

    module: str
    distribution: str
    extra: str
    note: str = ""

    def hint(self) -> str:
        """The install command for this package, e.g. "pip install 'ingan[onnx]'"."""
        if self.extra == "gpu":
            return f"pip install --extra-index-url {NVIDIA_INDEX} 'ingan[gpu]'"
        return f"pip install 'ingan[{self.extra}]'"


OPTIONAL: dict[str, OptionalPackage] = {o.module: o for o in (
    OptionalPackage("torch", "torch", "train", "training, export and the PyTorch reference backend"),
    OptionalPackage("onnx", "onnx", "export"),
    OptionalPackage("onnxscript", "onnxscript", "export"),
    OptionalPackage("onnxruntime", "onnxruntime", "onnx",
             "ONNX Runtime for the CPU; on an NVIDIA GPU use 'ingan[gpu-lean]' (onnxruntime-gpu) instead"),
    OptionalPackage("tensorrt", "tensorrt", "gpu", "the full TensorRT, from NVIDIA's package index"),
    OptionalPackage("tensorrt_lean", "tensorrt-lean-cu13", "gpu-lean", "runs --version-compatible plans"),
    OptionalPackage("cuda.bindings", "cuda-bindings", "gpu-lean"),
    OptionalPackage("matplotlib", "matplotlib", "bench"),
    OptionalPackage("ray", "ray", "fleet", "Ray core, for fleets of trainings"),
    OptionalPackage("ray.serve", "ray", "serve", "Ray Serve, for ingan-serve"),
)}


def install_hint(module: str) -> str:
    return OPTIONAL[module].hint()


def missing(module: str, purpose: str) -> MissingDependencyError:
    """The error for `purpose` (e.g. "Running an .onnx model") when `module` is not installed."""
    entry = OPTIONAL[module]
    return MissingDependencyError(entry.distribution, entry.extra, purpose, entry.hint())


def installed(module: str) -> bool:
    """Whether `module` can be imported (looked up, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing, or a broken install
        return False


def require(purpose: str, modules: tuple[str, ...], extra: str | None = None) -> None:
    """Raise the one-line error for the first of `modules` that is missing.

    CLIs call this before importing their heavy code, so a missing package is one line,
    not a traceback at some `import torch` deep inside. `extra` names the command's own
    extra (e.g. 'export'), which brings all of `modules`; else each package's smallest one.
    """
    for module in modules:
        if not installed(module):
            if extra is None:
                raise missing(module, purpose)
            entry = OPTIONAL[module]
            raise MissingDependencyError(entry.distribution, extra, purpose)
