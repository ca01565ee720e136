"""ONNX (docs/onnx-contract.md) -> TensorRT plan, for TensorRT 10.x and 11.x.

`tensorrt` is imported only inside functions, so importing this module costs nothing and
never pulls in torch. API choices that keep one code path for 10.x and 11.x (sources: the
NVIDIA links below and tests/export/test_tensorrt_api.py, which checks the names against the
real bindings):

- `builder.create_network(0)`: 11.x removed `NetworkDefinitionCreationFlag.EXPLICIT_BATCH`
  (10.x ignores it anyway) and is always strongly typed, so precision comes from the ONNX
  types, never from builder flags (`BuilderFlag.FP16` is gone in 11.x).
  https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/api/migration/tensorrt-10x-to-11x-python-api-reference.html
- `BuilderFlag.TF32` is ON by default and still applies to FP32 tensors; we clear it unless
  asked, so an FP32 engine matches FP32 PyTorch/ONNX Runtime at tight tolerances.
- `size` is a shape tensor: its profile is `set_shape_input` (values), never `set_shape`.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ingan.contract import HOMOGRAPHY_INPUT, IMAGE_INPUT, INPUT_NAMES, SIZE_INPUT
from ingan.errors import ConfigError, DeviceError, InganError, OutputPathError
from ingan.extras import install_hint, missing
from ingan.fsutil import atomic_path
from ingan.runtime.cuda import cuda_device_info, cuda_device_status
from ingan.runtime.trt_helpers import make_logger

log = logging.getLogger(__name__)

_TRT_MISSING = f"the 'tensorrt' package is not installed ({install_hint('tensorrt')})"

Shape4 = tuple[int, int, int, int]


class EngineBuildError(InganError):
    """TensorRT could not parse the ONNX file or build an engine from it."""


@dataclass(frozen=True)
class EngineBuildConfig:
    """What to build: the optimization profile and the builder options."""

    min_size: tuple[int, int]  # (height, width) values of the `size` shape tensor
    opt_size: tuple[int, int]
    max_size: tuple[int, int]
    image_shape: tuple[Shape4, Shape4, Shape4] | None = None  # min/opt/max [N,3,H,W] of `image`
    batch: int = 1  # N of `homography` [N,3,3] when the graph has no `image` input
    workspace_bytes: int = 4 << 30
    optimization_level: int = 3
    timing_cache: Path | None = None  # read if it exists, written back after the build
    version_compatible: bool = False  # needed by the tensorrt-lean runtime
    tf32: bool = False  # off: FP32 parity with PyTorch
    progress: bool = True  # tqdm bars on stderr fed by trt.IProgressMonitor

    def validate(self) -> None:
        """Raise ConfigError for contradictory or out-of-range options (no TensorRT needed)."""
        sizes = {"min": self.min_size, "opt": self.opt_size, "max": self.max_size}
        for label, value in sizes.items():
            if len(value) != 2 or any(int(v) < 1 for v in value):
                raise ConfigError(f"{label} size {value} must be two positive integers (height, width)")
        _check_ordered(SIZE_INPUT, self.min_size, self.opt_size, self.max_size, "--min-size/--opt-size/--max-size")
        if self.image_shape is not None:
            if len(self.image_shape) != 3:
                raise ConfigError("image_shape needs three shapes: min, opt, max")
            for label, shape in zip(("min", "opt", "max"), self.image_shape):
                if len(shape) != 4 or shape[1] != 3 or any(int(d) < 1 for d in shape):
                    raise ConfigError(f"{label} image shape {shape} must be [N, 3, H, W] with positive dims")
            _check_ordered("image shape", *self.image_shape, "the image shape range")
        if self.batch < 1:
            raise ConfigError(f"batch {self.batch} must be at least 1")
        if self.workspace_bytes < 1:
            raise ConfigError(f"workspace size {self.workspace_bytes} must be positive")
        if not 0 <= self.optimization_level <= 5:  # documented range of builder_optimization_level
            raise ConfigError(f"optimization level {self.optimization_level} must be in 0..5")


@dataclass(frozen=True)
class EngineBuildResult:
    """What was built, for the sidecar metadata next to the plan."""

    plan_path: Path
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    build_seconds: float
    flags: tuple[str, ...]  # every BuilderFlag set on the config (defaults included)
    profile: dict  # {"size": {"min": [h, w], "opt": ..., "max": ...}, "image": ..., "homography": ...}


def _check_ordered(label: str, lo: Any, opt: Any, hi: Any, option: str) -> None:
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise ConfigError(
            f"{label} range must satisfy min <= opt <= max in every dimension, got "
            f"{tuple(lo)} / {tuple(opt)} / {tuple(hi)}; fix {option}"
        )


# --------------------------------------------------------------------------- availability


def _import_tensorrt() -> tuple[ModuleType | None, str]:
    """(module, "") or (None, why): not installed, or installed but broken (missing CUDA libs)."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError as exc:
        if exc.name in ("tensorrt", None):
            return None, _TRT_MISSING
        return None, f"the 'tensorrt' package cannot be imported: {exc}"
    except (ImportError, OSError) as exc:
        return None, f"the 'tensorrt' package cannot be imported: {exc}"
    if not hasattr(trt, "Builder"):  # e.g. a runtime-only install
        return None, f"the installed 'tensorrt' {getattr(trt, '__version__', '?')} has no builder"
    return trt, ""


def tensorrt_status() -> tuple[bool, str]:
    """(True, "") when an engine can be built here, else (False, the reason). Never imports torch."""
    trt, reason = _import_tensorrt()
    if trt is None:
        return False, reason
    return cuda_device_status()


def _require_tensorrt() -> ModuleType:
    trt, reason = _import_tensorrt()
    if trt is None:
        if reason == _TRT_MISSING:
            raise missing("tensorrt", "Building a TensorRT engine")
        raise InganError(f"cannot build a TensorRT engine: {reason}")
    ok, reason = cuda_device_status()
    if not ok:
        if reason.startswith("cuda-python"):
            raise missing("cuda.bindings", "Building a TensorRT engine")
        raise DeviceError(f"cannot build a TensorRT engine: {reason}")
    return trt


# --------------------------------------------------------------------------- progress


def _progress_monitor_class(trt: ModuleType) -> type | None:
    """A `trt.IProgressMonitor` subclass drawing nested tqdm bars, or None before TRT 10.0.

    TensorRT calls it from its own threads through noexcept C++ methods, so every callback
    is locked and never lets an exception out. Ctrl-C that lands in a callback cancels the
    build (step_complete returns False) and is re-raised after the build returns.
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ProgressMonitor.html
    """
    if not hasattr(trt, "IProgressMonitor"):
        return None

    from tqdm import tqdm

    class _TqdmProgressMonitor(trt.IProgressMonitor):  # type: ignore[name-defined,misc]
        def __init__(self, enabled: bool = True) -> None:
            trt.IProgressMonitor.__init__(self)  # pybind11 trampoline needs the explicit call
            self._enabled = enabled
            self._bars: dict[str, Any] = {}
            self._depth: dict[str, int] = {}
            self._lock = threading.Lock()
            self.cancelled = False

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            try:
                with self._lock:
                    depth = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
                    self._depth[phase_name] = depth
                    self._bars[phase_name] = tqdm(
                        total=int(num_steps), desc=phase_name, position=depth, leave=False,
                        file=sys.stderr, dynamic_ncols=True, disable=not self._enabled,
                    )
            except KeyboardInterrupt:
                self.cancelled = True
            except Exception:  # noqa: BLE001
                log.debug("progress monitor: phase_start failed", exc_info=True)

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                with self._lock:
                    bar = self._bars.get(phase_name)
                    if bar is not None:
                        bar.update(max(int(step) + 1 - bar.n, 0))  # steps count 0..num_steps-1
            except KeyboardInterrupt:
                self.cancelled = True
            except Exception:  # noqa: BLE001
                log.debug("progress monitor: step_complete failed", exc_info=True)
            return not self.cancelled

        def phase_finish(self, phase_name: str) -> None:
            try:
                with self._lock:
                    bar = self._bars.pop(phase_name, None)
                    self._depth.pop(phase_name, None)
                    if bar is not None:
                        bar.close()
            except KeyboardInterrupt:
                self.cancelled = True
            except Exception:  # noqa: BLE001
                log.debug("progress monitor: phase_finish failed", exc_info=True)

        def close(self) -> None:
            """Close bars TensorRT left open (a failed or cancelled build skips phase_finish)."""
            with self._lock:
                for bar in self._bars.values():
                    bar.close()
                self._bars.clear()
                self._depth.clear()

    return _TqdmProgressMonitor


# --------------------------------------------------------------------------- build


def format_parser_errors(parser: Any) -> str:
    """Every ONNX parser error, one per entry: 'desc (node NAME, op OP)', joined with '; '."""
    lines = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        desc = str(error.desc()).strip()
        node, op = str(error.node_name() or ""), str(error.node_operator() or "")
        where = ", ".join(part for part in (f"node '{node}'" if node else "", f"op {op}" if op else "") if part)
        lines.append(f"{desc} ({where})" if where else desc)
    return "; ".join(lines)


def _network_inputs(network: Any) -> dict[str, Any]:
    inputs = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        inputs[tensor.name] = tensor
    return inputs


def _set_profile(network: Any, profile: Any, config: EngineBuildConfig) -> dict:
    """Fill the optimization profile from the network's inputs; return it as plain data."""
    inputs = _network_inputs(network)
    unknown = sorted(set(inputs) - set(INPUT_NAMES))
    if SIZE_INPUT not in inputs or unknown:
        raise EngineBuildError(
            f"the ONNX graph's inputs {sorted(inputs)} do not follow docs/onnx-contract.md "
            f"(size[, image][, homography]); export it with ingan-export"
        )
    size_tensor = inputs[SIZE_INPUT]
    if not size_tensor.is_shape_tensor:
        raise EngineBuildError(
            "TensorRT does not see 'size' as a shape tensor (it must only drive output shapes, "
            "see docs/onnx-contract.md); re-export the ONNX file with ingan-export"
        )
    record: dict[str, dict[str, list[int]]] = {}

    def apply(name: str, lo: Any, opt: Any, hi: Any, shape_input: bool) -> None:
        lo, opt, hi = ([int(v) for v in x] for x in (lo, opt, hi))
        try:
            if shape_input:
                profile.set_shape_input(name, lo, opt, hi)  # values of a shape tensor
            else:
                profile.set_shape(name, lo, opt, hi)  # dims of an execution tensor
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ConfigError(
                f"TensorRT rejected the profile for '{name}' (min {lo}, opt {opt}, max {hi}): {exc}"
            ) from None
        record[name] = {"min": lo, "opt": opt, "max": hi}

    apply(SIZE_INPUT, config.min_size, config.opt_size, config.max_size, shape_input=True)
    batch = (config.batch,) * 3
    if IMAGE_INPUT in inputs:
        if config.image_shape is None:
            raise ConfigError("the ONNX graph has an 'image' input: give the min/opt/max image shape")
        apply(IMAGE_INPUT, *config.image_shape, shape_input=False)
        batch = tuple(shape[0] for shape in config.image_shape)  # homography shares N with image
    elif config.image_shape is not None:
        log.warning("the ONNX graph has no 'image' input; ignoring the image shape range")
    if HOMOGRAPHY_INPUT in inputs:
        apply(HOMOGRAPHY_INPUT, *((n, 3, 3) for n in batch), shape_input=False)
    return record


def _apply_timing_cache(builder_config: Any, path: Path | None) -> Any:
    """Attach a timing cache (new, or loaded from `path`); keep the returned object alive."""
    blob = b""
    if path is not None and path.exists():
        if not path.is_file():
            raise ConfigError(f"timing cache '{path}' is not a file")
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read timing cache '{path}': {exc.strerror or exc}") from None
    cache = builder_config.create_timing_cache(blob)
    stale = (
        f"timing cache '{path}' was made by another TensorRT version, GPU or CUDA version (or is "
        f"corrupt); delete the file and build again (a new cache is written)"
    )
    if cache is None:
        raise EngineBuildError(stale)
    # ignore_mismatch=False: a cache from another device can give slow or wrong tactics
    # (pyCoreDoc.h set_timing_cache; ITimingCache.combine docs).
    if not builder_config.set_timing_cache(cache, ignore_mismatch=False):
        raise EngineBuildError(stale)
    return cache


def build_engine(onnx_path: Path, plan_path: Path, config: EngineBuildConfig) -> EngineBuildResult:
    """Parse `onnx_path`, build a plan for the config's profile, write it atomically to `plan_path`."""
    config.validate()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not onnx_path.is_file():
        raise EngineBuildError(f"ONNX file '{onnx_path}' not found; export one with ingan-export")
    timing_cache_path = Path(config.timing_cache) if config.timing_cache is not None else None
    for target in (plan_path, timing_cache_path):
        # Fail before a build that can take minutes, not after it.
        if target is not None and not target.parent.is_dir():
            raise OutputPathError(f"cannot write '{target}': folder '{target.parent}' does not exist")
    trt = _require_tensorrt()
    gpu_name, compute_capability = cuda_device_info()

    logger = make_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # 0: 11.x has no EXPLICIT_BATCH and is always strongly typed
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external weight files relative to the model's folder.
    if not parser.parse_from_file(str(onnx_path)):
        details = format_parser_errors(parser) or "; ".join(logger.take_errors()) or "no details"
        raise EngineBuildError(f"TensorRT could not parse '{onnx_path}': {details}")

    profile = builder.create_optimization_profile()
    profile_record = _set_profile(network, profile, config)

    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_bytes))
    builder_config.builder_optimization_level = int(config.optimization_level)
    if builder_config.add_optimization_profile(profile) < 0:
        raise EngineBuildError(f"TensorRT rejected the optimization profile: {'; '.join(logger.take_errors())}")
    if not config.tf32:
        builder_config.clear_flag(trt.BuilderFlag.TF32)
    if config.version_compatible:
        builder_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        log.info(
            "version-compatible plan: loading it needs runtime.engine_host_code_allowed = True "
            "(TrtEngineSession(..., allow_host_code=True)); only load plans you trust"
        )
    cache = _apply_timing_cache(builder_config, timing_cache_path)

    monitor = None
    monitor_cls = _progress_monitor_class(trt)
    if monitor_cls is not None:
        monitor = monitor_cls(enabled=config.progress)
        builder_config.progress_monitor = monitor  # must outlive the build (IProgressMonitor docs)
    elif config.progress:
        log.debug("TensorRT %s has no IProgressMonitor; building without a progress bar", trt.__version__)

    all_flags = trt.BuilderFlag.__members__  # pybind11 enum: {name: member}
    flags = tuple(name for name, flag in all_flags.items() if builder_config.get_flag(flag))
    log.info("building TensorRT %s engine from %s on %s (this can take minutes)", trt.__version__, onnx_path, gpu_name)
    start = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, builder_config)
    finally:
        if monitor is not None:
            monitor.close()
    build_seconds = time.perf_counter() - start
    if monitor is not None and monitor.cancelled:
        raise KeyboardInterrupt
    if serialized is None:
        errors = "; ".join(logger.take_errors()) or "no error logged (enable DEBUG logging for details)"
        raise EngineBuildError(f"TensorRT could not build the engine: {errors}")

    with atomic_path(plan_path) as tmp:
        with open(tmp, "wb") as f:
            f.write(memoryview(serialized))
    if timing_cache_path is not None:
        timing_cache = builder_config.get_timing_cache()
        blob = timing_cache.serialize()
        with atomic_path(timing_cache_path) as tmp:
            with open(tmp, "wb") as f:
                f.write(memoryview(blob))
    del cache
    log.info("wrote %s (%.1f s build)", plan_path, build_seconds)
    return EngineBuildResult(
        plan_path=plan_path,
        tensorrt_version=str(trt.__version__),
        gpu_name=gpu_name,
        compute_capability=compute_capability,
        build_seconds=build_seconds,
        flags=flags,
        profile=profile_record,
    )
