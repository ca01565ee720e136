"""TensorRT backend for `.plan` / `.engine` files (no torch).

A plan is tied to the GPU architecture and TensorRT version that built it (unless exported
with --version-compatible), and a version-compatible plan carries host code. So before any
GPU work the runner checks, in this order, each failure one line naming the fix:

1. `device`: only None, "cuda" or "cuda:N" (a plan never runs on the CPU);
2. a CUDA GPU is present (else: run the sibling .onnx with ONNX Runtime);
3. a TensorRT module: `tensorrt`, else `tensorrt_lean` for version-compatible plans;
4. a version-compatible plan needs `allow_host_code=True` (trusted plans only);
5. the plan's compute capability matches this GPU (sidecar `tensorrt.compute_capability`);
6. a plain plan's TensorRT major.minor matches the loaded module's.

The checks are pure functions of the sidecar metadata and the facts found here, so the CPU
tests cover every branch; the runner only gathers the facts. Sources for the rules:
https://docs.nvidia.com/deeplearning/tensorrt/11.1.0/inference-library/engine-compatibility.html
(version-compatible plans embed a lean runtime, load only with engine_host_code_allowed, and run
on the same or a newer runtime: 11.0 plans on 11.1+, 10.x plans on 11; never 8.x on 11),
https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/getting-started/support-matrix.html, and
for the lean runtime loading only version-compatible plans
https://github.com/NVIDIA/TensorRT/issues/4790. docs/export.md ("TensorRT engines") sums it up.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import numpy as np

from ingan.errors import ConfigError, DeviceError, InganError
from ingan.devices import check_device_name, cuda_index
from ingan.extras import install_hint, missing
from ingan.metadata import MetadataError, ModelMetadata
from ingan.runtime.base import Runner, graph_homography, to_hwc_uint8
from ingan.runtime.registry import BenchVariant, LoadOptions
from ingan.runtime.cuda import check_cuda, cuda_device_info, cuda_device_status, import_cudart
from ingan.runtime.trt_graphs import check_cuda_graphs
from ingan.runtime.trt_helpers import EngineLoadError, import_tensorrt
from ingan.runtime.trt_session import TrtEngineSession

log = logging.getLogger(__name__)

FULL_MODULE = "tensorrt"
LEAN_MODULE = "tensorrt_lean"
REQUIRED_KEYS = ("version", "gpu", "compute_capability", "flags", "version_compatible")
# TensorRT hardware-compatibility levels (HardwareCompatibilityLevel; NvInfer.h). ingan-export
# does not set one today; a sidecar may record it in `flags`.
AMPERE_PLUS = "AMPERE_PLUS"
SAME_COMPUTE_CAPABILITY = "SAME_COMPUTE_CAPABILITY"


# --------------------------------------------------------------------------- pure checks


def engine_info(metadata: ModelMetadata) -> dict[str, Any]:
    """The sidecar's `tensorrt` section, checked to hold what the runner needs."""
    info = metadata.tensorrt
    if not isinstance(info, Mapping):
        raise MetadataError(
            f"the metadata of '{metadata.artifact}' has no 'tensorrt' section; rebuild the engine with ingan-export"
        )
    missing = [key for key in REQUIRED_KEYS if key not in info]
    if missing:
        raise MetadataError(
            f"the metadata of '{metadata.artifact}' lacks tensorrt.{', tensorrt.'.join(missing)}; "
            "rebuild the engine with ingan-export"
        )
    return dict(info)


def sibling_onnx(plan: Path, info: Mapping[str, Any]) -> Path | None:
    """The ONNX file this plan was built from, if it sits next to the plan."""
    name = info.get("onnx")
    if not isinstance(name, str) or not name or Path(name).name != name:
        return None
    candidate = Path(plan).with_name(name)
    return candidate if candidate.is_file() else None


def _onnx_hint(onnx: Path | None) -> str:
    if onnx is not None:
        return f"run the .onnx with ONNX Runtime instead: ingan-run {onnx}"
    return "run the .onnx it was exported from with ONNX Runtime instead: ingan-run model.onnx"


def parse_device(device: str | None, onnx: Path | None = None) -> int | None:
    """None/"auto"/"cuda" -> None (the current CUDA device), "cuda:N" -> N; "cpu" raises."""
    if device is None or check_device_name(device) in ("auto", "cuda"):
        return None
    index = cuda_index(device)
    if index is None:
        raise DeviceError(f"device '{device}': a .plan runs only on an NVIDIA GPU (cuda[:N]); {_onnx_hint(onnx)}")
    return index


def check_gpu_present(ok: bool, reason: str, plan: Path, onnx: Path | None) -> None:
    """`cuda_device_status()`'s answer -> nothing, or the error that says what to do instead."""
    if ok:
        return
    if reason.startswith("cuda-python"):
        raise missing("cuda.bindings", f"Running the TensorRT plan '{Path(plan).name}'")
    raise DeviceError(f"cannot run '{Path(plan).name}': {reason}; a .plan needs an NVIDIA GPU; {_onnx_hint(onnx)}")


def check_device_index(index: int | None, count: int) -> None:
    if index is not None and not 0 <= index < count:
        raise DeviceError(
            f"device cuda:{index} does not exist: this machine has {count} CUDA GPU(s) "
            f"(cuda:0 .. cuda:{count - 1}); pick one of those"
        )


def choose_tensorrt_module(version_compatible: bool, have_full: bool, have_lean: bool) -> str:
    """`tensorrt` if installed; else `tensorrt_lean` for a version-compatible plan; else raise."""
    if have_full:
        return FULL_MODULE
    if version_compatible and have_lean:
        return LEAN_MODULE
    if version_compatible:
        raise missing("tensorrt_lean", "Running this version-compatible TensorRT plan (or the full 'tensorrt')")
    if have_lean:
        raise missing(
            "tensorrt",
            "Running this plan (the installed lean runtime 'tensorrt_lean' only loads plans exported with "
            "ingan-export --version-compatible; re-export with that flag to use it)",
        )
    raise missing("tensorrt", "Running a TensorRT plan")


def check_host_code(version_compatible: bool, allow_host_code: bool, plan: Path) -> None:
    if version_compatible and not allow_host_code:
        raise ConfigError(
            f"'{Path(plan).name}' is a version-compatible plan: it embeds TensorRT host code that runs when "
            "it loads; pass --allow-host-code (ingan-run) / allow_host_code=True only for plans you trust"
        )


def _capability(value: Any, what: str) -> tuple[int, int]:
    try:
        major, minor = str(value).strip().split(".")
        return int(major), int(minor)
    except (ValueError, AttributeError):
        raise MetadataError(f"{what} compute capability {value!r} is not 'major.minor'; rebuild the engine") from None


def hardware_compatibility(flags: Any) -> str | None:
    """The hardware-compatibility level recorded in the sidecar's flags, if any."""
    for flag in flags or ():
        text = str(flag).upper()
        for level in (AMPERE_PLUS, SAME_COMPUTE_CAPABILITY):
            if text == level or text.endswith("." + level) or text.endswith("=" + level):
                return level
    return None


def check_gpu_match(info: Mapping[str, Any], gpu_name: str, compute_capability: str, plan: Path) -> str | None:
    """Raise if the plan was built for another GPU architecture; return a warning or None.

    TensorRT plans are specific to the GPU they were built on unless built with a hardware-
    compatibility level: AMPERE_PLUS plans run on any sm >= 8.0 (engine-compatibility docs).
    The GPU name is informational: the same compute capability loads, with a warning.
    """
    built = _capability(info["compute_capability"], "the plan's")
    here = _capability(compute_capability, "this GPU's")
    built_gpu = str(info.get("gpu") or "an unknown GPU")
    name = Path(plan).name
    if built == here:
        if built_gpu != gpu_name:
            return (f"'{name}' was built on {built_gpu}, this is {gpu_name} (both sm {here[0]}.{here[1]}): "
                    "it loads, but its kernels were tuned for the other GPU; rebuild with ingan-export here "
                    "for best speed")
        return None
    if hardware_compatibility(info.get("flags")) == AMPERE_PLUS and built[0] >= 8 and here[0] >= 8:
        return None
    raise DeviceError(
        f"'{name}' was built on {built_gpu} (sm {built[0]}.{built[1]}); this GPU is {gpu_name} "
        f"(sm {here[0]}.{here[1]}); rebuild with ingan-export on this machine"
    )


def _major_minor(version: Any, what: str) -> tuple[int, int]:
    parts = str(version).strip().split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        raise MetadataError(f"{what} TensorRT version {version!r} is not 'major.minor[...]'") from None


def check_tensorrt_version(info: Mapping[str, Any], module_name: str, module_version: str, plan: Path) -> str | None:
    """Raise if this TensorRT cannot load the plan; return a warning or None.

    A plain plan loads only in the TensorRT major.minor that built it. A version-compatible
    plan loads in the same or a newer runtime (10.x plans in 11.x too; 8.x plans not in 11.x)
    (the engine-compatibility docs named in the module docstring).
    """
    built = _major_minor(info["version"], "the plan's")
    here = _major_minor(module_version, f"the installed {module_name}")
    name = Path(plan).name
    label = f"{module_name} {module_version}"
    if not info.get("version_compatible"):
        if built != here:
            raise EngineLoadError(
                f"'{name}' was built with TensorRT {info['version']} but this is {label}; a plan loads only in "
                f"the TensorRT {built[0]}.{built[1]}.x that built it: rebuild it with ingan-export on this machine, "
                "or export it with ingan-export --version-compatible"
            )
        return None
    if here[0] < built[0] or built[0] < here[0] - 1:
        raise EngineLoadError(
            f"'{name}' (version-compatible) was built with TensorRT {info['version']}, which {label} cannot "
            f"load; rebuild it with ingan-export on this machine"
        )
    if here < built:
        return (f"'{name}' was built with TensorRT {info['version']}, newer than {label}; if it fails to load, "
                "upgrade TensorRT or rebuild the plan here")
    return None


def check_engine_matches_metadata(metadata: ModelMetadata, input_names: tuple[str, ...],
                                  size_range: tuple[tuple[int, int], tuple[int, int]], plan: Path) -> None:
    """The loaded engine's inputs and size profile are the ones the sidecar describes."""
    problems = metadata.input_problems(input_names)
    wanted = (tuple(metadata.min_size), tuple(metadata.max_size))
    if tuple(map(tuple, size_range)) != wanted:
        problems.append(f"size range: engine {size_range}, metadata {wanted}")
    if problems:
        raise MetadataError(
            f"'{Path(plan).name}' does not match its metadata ({'; '.join(problems)}); rebuild it with ingan-export"
        )


# --------------------------------------------------------------------------- facts (monkeypatched in tests)


def _module_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def _load_module(name: str) -> ModuleType:
    return import_tensorrt(lean=name == LEAN_MODULE)


def _select_device(index: int | None) -> int:
    """Make `index` (or the current device) current for this thread; return its number."""
    cudart = import_cudart()
    if cudart is None:
        raise missing("cuda.bindings", "Running a TensorRT plan")
    count = check_cuda(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    check_device_index(index, int(count))
    if index is not None:
        check_cuda(cudart.cudaSetDevice(index), f"cudaSetDevice({index})")
    return int(check_cuda(cudart.cudaGetDevice(), "cudaGetDevice"))


def _short_version(version: str) -> str:
    return ".".join(str(version).split(".")[:3])


# --------------------------------------------------------------------------- the runner


class TrtRunner(Runner):
    """A TensorRT plan (`.plan`/`.engine`) on its NVIDIA GPU."""

    backend = "tensorrt"
    aliases = ("trt",)
    suffixes = (".plan", ".engine")
    model_kind = "tensorrt"
    extra = "gpu"
    packages = ("tensorrt",)
    devices = ("cuda",)
    takes = frozenset({"allow_host_code", "cuda_graphs"})
    rank = 10
    bench_variants = (BenchVariant("tensorrt", "cuda", "TensorRT plan (precision as built), CUDA events on its stream",
                                   graphs=True, probe="tensorrt"),)

    @classmethod
    def why_unavailable(cls, variant: BenchVariant) -> str | None:
        if not (_module_available(FULL_MODULE) or _module_available(LEAN_MODULE)):
            return (f"neither 'tensorrt' nor 'tensorrt_lean' is installed ({install_hint('tensorrt')}, or "
                    f"{install_hint('tensorrt_lean')} for --version-compatible plans)")
        ok, why = cuda_device_status()
        return None if ok else why

    def __init__(self, path: str | Path, metadata: ModelMetadata, options: LoadOptions = LoadOptions()) -> None:
        super().__init__(path, metadata)
        self.session: TrtEngineSession | None = None
        allow_host_code = options.allow_host_code
        info = engine_info(metadata)
        onnx = sibling_onnx(self.path, info)
        index = parse_device(options.device, onnx)
        self.cuda_graphs = check_cuda_graphs(options.cuda_graphs)
        ok, reason = cuda_device_status()
        check_gpu_present(ok, reason, self.path, onnx)
        self._device_index = _select_device(index)
        gpu_name, compute_capability = cuda_device_info()
        version_compatible = bool(info["version_compatible"])
        module_name = choose_tensorrt_module(
            version_compatible, _module_available(FULL_MODULE), _module_available(LEAN_MODULE)
        )
        trt = _load_module(module_name)
        check_host_code(version_compatible, allow_host_code, self.path)
        for warning in (check_gpu_match(info, gpu_name, compute_capability, self.path),
                        check_tensorrt_version(info, module_name, str(trt.__version__), self.path)):
            if warning:
                log.warning("%s", warning)

        lean = module_name == LEAN_MODULE
        self.session = TrtEngineSession(self.path.read_bytes(), lean=lean, allow_host_code=allow_host_code,
                                        cuda_graphs=self.cuda_graphs)
        try:
            check_engine_matches_metadata(metadata, self.session.input_names, self.session.size_range, self.path)
        except InganError:
            self.session.close()
            self.session = None
            raise
        runtime = "TensorRT lean" if lean else "TensorRT"
        self._device = f"cuda:{self._device_index} ({gpu_name}, {runtime} {_short_version(trt.__version__)})"

    @property
    def device(self) -> str:
        return self._device

    def _use_device(self) -> None:
        """CUDA's current device is per host thread: re-select ours (cheap) before GPU calls."""
        cudart = import_cudart()
        if cudart is not None:
            check_cuda(cudart.cudaSetDevice(self._device_index), f"cudaSetDevice({self._device_index})")

    def _retarget(self, size: tuple[int, int], homography: np.ndarray | None,
                  image: np.ndarray | None) -> np.ndarray:
        assert self.session is not None
        self._use_device()
        output = self.session.run(size, image=image, homography=graph_homography(self.metadata, homography))
        return to_hwc_uint8(output, self.metadata.output_format)

    def _close(self) -> None:
        if self.session is not None:
            self._use_device()
            self.session.close()
            self.session = None
