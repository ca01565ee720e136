"""Analytic cost of one generator forward, and the devices' peak rates (no torch).

FLOPs are counted for the convolutions only, as 2 x multiply-accumulates (the usual
convention); normalisation, activations, pads, pools, resizes and the uint8 conversion
are left out (well under 1 % of the work at the paper's shape). Every conv is listed by
`conv_layers`, derived from a `GeneratorConfig` exactly as `ingan.model.generator`
builds it, so a config change cannot leave the formula behind (tests/bench/test_cost.py
counts the real generator's convs with forward hooks and compares).

The network runs at the *internal* size, the output size rounded up to a multiple of
2**n_downsampling (then centre-cropped), so that is the size the count uses. The entry
7x7 conv runs at the *input image's* resolution; an exported graph with the training
image baked in has it constant-folded away (the exporter folds it; ONNX Runtime would
fold it too), so ONNX/TensorRT models with a baked image do not execute it at all while
the PyTorch checkpoint does. `ForwardCost.entry_flops` keeps that part separate.

For the paper's generator (base 64, 6 blocks, 3 downsamplings) this gives 477,888
MAC per internal output pixel plus 9,408 MAC per input pixel for the entry conv
(0.617 GMAC for a 256x256 image); docs/bench.md ("Cost") has the numbers and how they were checked.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingan.model.config import GeneratorConfig
from ingan.model.sizes import internal_size

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConvLayer:
    """One convolution: `level` None = input resolution, else internal size / 2**level."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    level: int | None

    @property
    def macs_per_pixel(self) -> int:
        return self.kernel * self.kernel * self.in_channels * self.out_channels

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)


def conv_layers(config: GeneratorConfig) -> list[ConvLayer]:
    """Every conv of `Generator(config)`, in forward order (mirrors ingan/model/generator.py)."""
    c, n = config.base_channels, config.n_downsampling
    layers = [ConvLayer("entry", 3, c, 7, None)]
    for i in range(n):  # down: 3x3 conv at level i, then max-pool to level i + 1
        layers.append(ConvLayer(f"down{i}", c * 2**i, c * 2 ** (i + 1), 3, i))
    width = c * 2**n
    inner = max(width // 4, 1)
    for b in range(config.n_blocks):  # bottleneck res-blocks at level n: 1x1, 3x3, 1x1
        layers += [ConvLayer(f"block{b}.squeeze", width, inner, 1, n),
                   ConvLayer(f"block{b}.conv", inner, inner, 3, n),
                   ConvLayer(f"block{b}.expand", inner, width, 1, n)]
    for i in reversed(range(n)):  # up: nearest x2 to level i, then a 3x3 conv
        layers.append(ConvLayer(f"up{i}", c * 2 ** (i + 1), c * 2**i, 3, i))
    layers.append(ConvLayer("final", c, 3, 7, 0))
    return layers


def macs_per_output_pixel(config: GeneratorConfig) -> float:
    """MACs per internal output pixel, everything but the entry conv (477,888 for the paper)."""
    return sum(layer.macs_per_pixel / 4**layer.level for layer in conv_layers(config) if layer.level is not None)


@dataclass(frozen=True)
class ForwardCost:
    """FLOPs of one forward at one output size."""

    output_size: tuple[int, int]  # (height, width) requested
    internal_size: tuple[int, int]  # what the network computes before the centre crop
    synthesis_flops: float  # every conv after the geometric step
    entry_flops: float  # the entry conv at the input resolution (0 when folded into a constant)
    entry_executed: bool

    @property
    def flops(self) -> float:
        return self.synthesis_flops + (self.entry_flops if self.entry_executed else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gflop": round(self.flops / 1e9, 6),
            "synthesis_gflop": round(self.synthesis_flops / 1e9, 6),
            "entry_gflop": round(self.entry_flops / 1e9, 6),
            "entry_executed": self.entry_executed,
            "internal_size": {"width": self.internal_size[1], "height": self.internal_size[0]},
        }


def forward_cost(config: GeneratorConfig, output_size: tuple[int, int], input_size: tuple[int, int],
                 entry_executed: bool = True) -> ForwardCost:
    """FLOPs (2 x MACs) of one forward producing `output_size` = (h, w) from an `input_size` image."""
    ih, iw = internal_size(output_size[0], output_size[1], config.size_multiple)
    synthesis = 0
    entry = 0
    for layer in conv_layers(config):
        if layer.level is None:
            entry += layer.macs_per_pixel * input_size[0] * input_size[1]
        else:
            pixels = (ih >> layer.level) * (iw >> layer.level)  # exact: ih, iw are multiples of 2**n
            synthesis += layer.macs_per_pixel * pixels
    return ForwardCost((int(output_size[0]), int(output_size[1])), (ih, iw), 2.0 * synthesis, 2.0 * entry,
                       entry_executed)


# --------------------------------------------------------------------------- the config of an ONNX file


def config_from_conv_shapes(shapes: list[tuple[int, ...]]) -> tuple[GeneratorConfig, bool] | None:
    """(config, entry conv present) from a graph's conv weight shapes, or None if not ours.

    The down/up convs are the 3x3 convs whose channel count doubles or halves, the
    bottleneck's 3x3 convs keep theirs, and the last conv maps base channels to RGB.
    The guess is accepted only if `conv_layers` of it reproduces the shapes exactly.
    """
    shapes = [tuple(int(d) for d in s) for s in shapes if len(s) == 4]
    finals = [s for s in shapes if s[0] == 3 and s[2] == 7]
    if len(finals) != 1:
        return None
    base = finals[0][1]
    n_down = sum(1 for s in shapes if s[2] == 3 and s[0] == 2 * s[1])
    n_blocks = sum(1 for s in shapes if s[2] == 3 and s[0] == s[1])
    try:
        config = GeneratorConfig(base_channels=base, n_blocks=n_blocks, n_downsampling=n_down, spectral_norm=False)
    except Exception:  # noqa: BLE001 - an implausible guess is simply not ours
        return None
    expected = [layer.weight_shape for layer in conv_layers(config)]
    found = sorted(shapes)
    if found == sorted(expected):
        return config, True
    if found == sorted(expected[1:]):  # entry conv folded into a constant (baked training image)
        return config, False
    return None


def config_from_onnx(path: str | os.PathLike[str]) -> tuple[GeneratorConfig, bool] | None:
    """Read the conv weight shapes of an exported graph (needs the `onnx` package; no torch).

    Returns None when `onnx` is missing or the graph is not an ingan generator.
    """
    try:
        import onnx
    except ImportError:
        log.debug("onnx is not installed: no analytic cost for %s", path)
        return None
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - a file ONNX cannot read has no cost to report
        log.debug("cannot read %s for its conv shapes: %s", path, exc)
        return None
    graph = model.graph
    shapes: dict[str, tuple[int, ...]] = {init.name: tuple(init.dims) for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(attr.t.dims)

    def weight_shape(name: str, depth: int = 0) -> tuple[int, ...] | None:
        if name in shapes:
            return shapes[name]
        node = producers.get(name)  # e.g. a Cast or DequantizeLinear in front of the weight
        if node is None or depth > 3 or not node.input:
            return None
        return weight_shape(node.input[0], depth + 1)

    conv_shapes = []
    for node in graph.node:
        if node.op_type == "Conv" and len(node.input) > 1:
            shape = weight_shape(node.input[1])
            if shape is None:
                return None
            conv_shapes.append(shape)
    return config_from_conv_shapes(conv_shapes)


# --------------------------------------------------------------------------- device peaks


@dataclass(frozen=True)
class DevicePeak:
    """Dense (no 2:4 sparsity) peak TFLOP/s of one GPU model, from NVIDIA's datasheet."""

    name: str
    pattern: str  # regex matched (case-insensitive) against the CUDA device name
    fp32: float
    tf32: float | None
    fp16: float | None
    bf16: float | None
    source: str

    def for_math(self, math_mode: str) -> float | None:
        return {"fp32": self.fp32, "tf32": self.tf32, "fp16": self.fp16, "bf16": self.bf16}.get(math_mode)


# Datasheets print tensor-core rates "with sparsity"; dense is half of those. Order matters:
# more specific names first. Peaks are at boost clock; a locked or throttled clock is lower.
PEAKS: tuple[DevicePeak, ...] = (
    DevicePeak("H100 NVL", r"H100.*NVL", 60.0, 417.5, 835.5, 835.5,
               "NVIDIA H100 datasheet (https://www.nvidia.com/en-us/data-center/h100/): TF32 835, BF16/FP16 1,671 "
               "TFLOPS with sparsity"),
    DevicePeak("H100 PCIe", r"H100.*PCIe", 51.0, 378.0, 756.0, 756.0,
               "NVIDIA H100 datasheet (https://www.nvidia.com/en-us/data-center/h100/): TF32 756, BF16/FP16 1,513 "
               "TFLOPS with sparsity"),
    DevicePeak("H100 SXM", r"H100", 67.0, 494.7, 989.4, 989.4,
               "NVIDIA H100 datasheet (https://www.nvidia.com/en-us/data-center/h100/): FP32 67, TF32 989, BF16/FP16 "
               "1,979 TFLOPS with sparsity (dense 494.7 / 989.4)"),
    DevicePeak("H200 NVL", r"H200.*NVL", 60.0, 417.5, 835.5, 835.5,
               "NVIDIA H200 datasheet (https://www.nvidia.com/en-us/data-center/h200/): TF32 835, BF16/FP16 1,671 "
               "TFLOPS with sparsity"),
    DevicePeak("H200 SXM", r"H200", 67.0, 494.7, 989.4, 989.4,
               "NVIDIA H200 datasheet (https://www.nvidia.com/en-us/data-center/h200/): FP32 67, TF32 989, BF16/FP16 "
               "1,979 TFLOPS with sparsity"),
    DevicePeak("A100", r"A100", 19.5, 156.0, 312.0, 312.0,
               "NVIDIA A100 datasheet (https://www.nvidia.com/en-us/data-center/a100/): FP32 19.5, TF32 156, BF16/FP16 "
               "312 TFLOPS dense (312 / 624 with sparsity)"),
    DevicePeak("L40S", r"L40S", 91.6, 183.0, 362.05, 362.05,
               "NVIDIA L40S datasheet (https://www.nvidia.com/en-us/data-center/l40s/): FP32 91.6, TF32 183, BF16/FP16 "
               "362.05 TFLOPS dense"),
    DevicePeak("L4", r"\bL4\b", 30.3, 60.0, 121.0, 121.0,
               "NVIDIA L4 datasheet (https://www.nvidia.com/en-us/data-center/l4/): FP32 30.3, TF32 120, BF16/FP16 242 "
               "TFLOPS with sparsity"),
    DevicePeak("GeForce RTX 4090", r"RTX 4090", 82.6, 82.6, 165.2, 165.2,
               "NVIDIA Ada Lovelace architecture whitepaper, RTX 4090: FP32 82.6, TF32 82.6, FP16/BF16 tensor 165.2 "
               "TFLOPS dense with FP32 accumulate (330.3 with FP16 accumulate)"),
    DevicePeak("T4", r"\bT4\b", 8.1, None, 65.0, None,
               "NVIDIA T4 datasheet (https://www.nvidia.com/en-us/data-center/tesla-t4/): FP32 8.1, mixed FP16/FP32 65 "
               "TFLOPS"),
)


def find_peak(device_name: str | None) -> DevicePeak | None:
    if not device_name:
        return None
    for peak in PEAKS:
        if re.search(peak.pattern, device_name, flags=re.IGNORECASE):
            return peak
    return None


def peak_tflops(device_name: str | None, math_mode: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it comes from) for a device and math mode; (None, why) if unknown."""
    if override is not None:
        return float(override), "user (--peak-tflops)"
    peak = find_peak(device_name)
    if peak is None:
        return None, f"unknown peak for '{device_name or 'this device'}'; pass --peak-tflops"
    value = peak.for_math(math_mode)
    if value is None:
        return None, f"{peak.name} has no {math_mode} peak in the table; pass --peak-tflops"
    return value, f"{peak.name} {math_mode} dense: {peak.source}"


def cost_block(cost: ForwardCost | None, seconds: float | None, device_name: str | None, math_mode: str,
               cpu: bool, override: float | None) -> dict[str, Any]:
    """The report's `cost` object for one cell (`seconds`: the median compute time)."""
    if cost is None:
        return {"gflop": None, "note": "analytic cost unknown (not an ingan generator graph, or `onnx` missing)"}
    block = cost.to_dict()
    achieved = cost.flops / seconds / 1e12 if seconds else None
    block["achieved_tflops"] = round(achieved, 6) if achieved is not None else None
    if cpu and override is None:
        peak, source = None, "CPU peak unknown; pass --peak-tflops"
    else:
        peak, source = peak_tflops(device_name, math_mode, override)
    block["peak_tflops"] = peak
    block["peak_source"] = source
    block["percent_of_peak"] = round(100.0 * achieved / peak, 4) if achieved is not None and peak else None
    return block


def model_config_for(path: Path, kind: str, sibling_onnx: str | None = None) -> tuple[GeneratorConfig, bool] | None:
    """The generator config (and whether the entry conv runs) for a model file, torch-free.

    ONNX: read from the graph. TensorRT plans: from the ONNX file the plan was built from
    (named in its metadata), when it sits next to the plan.
    """
    if kind == "onnx":
        return config_from_onnx(path)
    if kind == "tensorrt" and sibling_onnx:
        onnx_path = path.parent / sibling_onnx
        if onnx_path.is_file():
            return config_from_onnx(onnx_path)
    return None
