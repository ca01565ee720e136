"""ONNX Runtime backend for `.onnx` files (no torch)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ingan.devices import check_device_name, cuda_index
from ingan.errors import DeviceError, InganError, first_line
from ingan.extras import install_hint
from ingan.metadata import MetadataError, ModelMetadata, size_range_from_properties
from ingan.sizes import format_range
from ingan.contract import OUTPUT_NAME, graph_feed
from ingan.runtime.base import Runner, graph_homography, to_hwc_uint8
from ingan.runtime.registry import BenchVariant, LoadOptions
from ingan.runtime.ort_session import create_session, import_onnxruntime

log = logging.getLogger(__name__)

# Priority when choosing automatically. The TensorRT EP caches the engines it builds.
AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ALIASES = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider",
           "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def choose_providers(available: Sequence[str], requested: Sequence[str] | None, device: str | None,
                     cache_dir: Path) -> list[Any]:
    """Provider list in priority order, with options (TensorRT EP engine cache, cuda:N's device id)."""
    if device is not None and check_device_name(device) == "auto":
        device = None
    gpu_index = cuda_index(device)
    if requested:
        names = [ALIASES.get(p.lower(), p) for p in requested]
        gpu = [n for n in names if n != "CPUExecutionProvider"]
        if device and (device == "cpu") == bool(gpu):
            wanted = "--provider cpu" if device == "cpu" else "--provider cuda or tensorrt"
            raise DeviceError(
                f"--device {device} contradicts --provider {' '.join(requested)}; drop one of them, "
                f"or pass {wanted}"
            )
    elif device == "cpu":
        names = ["CPUExecutionProvider"]
    else:
        names = [p for p in AUTO_ORDER if p in available]
        if device and device.startswith("cuda") and not any(n != "CPUExecutionProvider" for n in names):
            raise DeviceError(
                "--device cuda: this onnxruntime has no CUDA or TensorRT provider (available: "
                f"{', '.join(available)}); install onnxruntime-gpu ({install_hint('cuda.bindings')}) or use --device cpu"
            )
    missing = [n for n in names if n not in available]
    if missing:
        raise DeviceError(
            f"ONNX Runtime provider(s) {', '.join(missing)} not available here (available: "
            f"{', '.join(available)}); pick one of those"
        )
    providers: list[Any] = []
    on_device = {} if gpu_index is None else {"device_id": gpu_index}
    for name in names:
        if name == "TensorrtExecutionProvider":
            cache_dir.mkdir(parents=True, exist_ok=True)
            providers.append((name, {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache_dir),
                                     "trt_timing_cache_enable": True, **on_device}))
        elif name == "CUDAExecutionProvider" and on_device:
            providers.append((name, on_device))
        else:
            providers.append(name)
    if "CPUExecutionProvider" not in names:
        providers.append("CPUExecutionProvider")  # ORT places shape ops on the CPU anyway
    return providers


class OrtRunner(Runner):
    """An exported `.onnx` graph in ONNX Runtime, on the CPU or a GPU execution provider."""

    backend = "onnxruntime"
    aliases = ("ort", "onnx")
    suffixes = (".onnx",)
    model_kind = "onnx"
    extra = "onnx"
    packages = ("onnxruntime",)
    devices = ("cpu", "cuda")
    takes = frozenset({"providers", "threads"})
    rank = 20
    bench_variants = (
        BenchVariant("ort-tensorrt", "cuda", "ONNX Runtime, TensorRT execution provider (wall-clock)",
                     provider="TensorrtExecutionProvider"),
        BenchVariant("ort-cuda", "cuda", "ONNX Runtime, CUDA execution provider (wall-clock)",
                     provider="CUDAExecutionProvider"),
        BenchVariant("ort-cpu", "cpu", "ONNX Runtime, CPU execution provider (wall-clock)",
                     provider="CPUExecutionProvider"),
    )

    @classmethod
    def why_unavailable(cls, variant: BenchVariant) -> str | None:
        try:
            ort = import_onnxruntime()
        except InganError:
            return f"onnxruntime is not installed ({install_hint('onnxruntime')}; on a GPU {install_hint('cuda.bindings')})"
        available = ort.get_available_providers()
        if variant.provider is not None and variant.provider not in available:
            return f"this onnxruntime has no {variant.provider} (available: {', '.join(available)})"
        return None

    def __init__(self, path: str | Path, metadata: ModelMetadata, options: LoadOptions = LoadOptions()) -> None:
        super().__init__(path, metadata)
        ort = import_onnxruntime()
        chosen = choose_providers(ort.get_available_providers(), options.providers, options.device,
                                  self.path.parent / f".{self.path.name}.trt-cache")
        self.session = create_session(self.path, providers=chosen, threads=options.threads)
        problems = metadata.input_problems(i.name for i in self.session.get_inputs())
        recorded = size_range_from_properties(dict(self.session.get_modelmeta().custom_metadata_map))
        if recorded is not None and recorded != (list(metadata.min_size), list(metadata.max_size)):
            problems.append(f"size range: model {format_range(*recorded)}, sidecar "
                            f"{format_range(metadata.min_size, metadata.max_size)}")
        if problems:
            raise MetadataError(
                f"'{self.path.name}' does not match its .json sidecar ({'; '.join(problems)}); the sidecar "
                "does not belong to this model: re-export it"
            )
        self.providers = self.session.get_providers()
        requested_first = chosen[0][0] if isinstance(chosen[0], tuple) else chosen[0]
        if self.providers[0] != requested_first:
            # ORT falls back silently when a provider fails to initialise: say so.
            log.warning("ONNX Runtime could not use %s; running on %s", requested_first, self.providers[0])
        self._gpu = self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        self._binding = self.session.io_binding() if self._gpu else None

    @property
    def device(self) -> str:
        return self.providers[0]

    def _retarget(self, size: tuple[int, int], homography: np.ndarray | None,
                  image: np.ndarray | None) -> np.ndarray:
        try:
            return self._run(size, homography, image)
        except Exception as exc:
            if not type(exc).__module__.startswith("onnxruntime"):
                raise
            detail = first_line(exc)
            raise InganError(
                f"ONNX Runtime failed at {size[1]}x{size[0]} ({detail}); for an allocation failure pick a "
                "smaller size, otherwise the model or its .json sidecar is damaged: re-export it"
            ) from None

    def _run(self, size: tuple[int, int], homography: np.ndarray | None,
             image: np.ndarray | None) -> np.ndarray:
        feed = graph_feed(size, image, graph_homography(self.metadata, homography))
        if self._binding is None:
            output = self.session.run([OUTPUT_NAME], feed)[0]
        else:
            # I/O binding: inputs from host memory, the output allocated on the GPU by ORT and
            # copied back once (no per-run host allocation inside ORT).
            binding = self._binding
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
            for name, value in feed.items():
                binding.bind_cpu_input(name, value)
            binding.bind_output(OUTPUT_NAME, "cuda")
            self.session.run_with_iobinding(binding)
            output = binding.copy_outputs_to_cpu()[0]
        return to_hwc_uint8(output, self.metadata.output_format)

    def _close(self) -> None:
        self._binding = None
        self.session = None
