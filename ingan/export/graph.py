"""The module that is exported: generator + run-time size logic + I/O conversion.

Everything that depends on the requested size happens in the graph (rounding up to the
architecture's multiple, centre crop, homography grid), so one ONNX file serves every
size. The contract is in docs/onnx-contract.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ingan import contract
from ingan.errors import ConfigError
from ingan.model.generator import Generator
from ingan.model.deploy import baked_generator
from ingan.model.precision import HalfEmulation, round_parameters_, round_through
from ingan.model.warp import homography_grid

# Generous bound for the exporter's symbolic checks; the real range lives in the metadata.
MAX_SIDE = 16384


@dataclass(frozen=True)
class ExportSpec:
    """Which graph variant to export."""

    image_input: bool = False
    warp: bool = False
    output: Literal["uint8", "float"] = "uint8"
    precision: Literal["fp32", "fp16"] = "fp32"
    opset: int = 18

    def __post_init__(self) -> None:
        if self.output not in ("uint8", "float"):
            raise ConfigError(f"unknown output format '{self.output}'; use uint8 or float")
        if self.precision not in ("fp32", "fp16"):
            raise ConfigError(f"unknown precision '{self.precision}'; use fp32 or fp16")
        if not 18 <= self.opset <= 19:
            # >= 18: torch's exporter emits opset 18 and cannot convert this graph's Pad down
            # to 17; <= 19 because GridSample-20 renamed its modes and TensorRT's parser
            # falls back to nearest.
            raise ConfigError(f"opset {self.opset} is not supported; use 18 or 19")

    @property
    def input_names(self) -> list[str]:
        return contract.input_names(self.image_input, self.warp)


class _Fp32Norm(nn.Module):
    """Normalisation in FP32 inside an FP16 graph: FP16's range overflows in the variance."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.float()).to(x.dtype)


def _swap_norms(module: nn.Module, fp32_norm: bool) -> None:
    """GroupNorm(C, C) -> InstanceNorm2d (ONNX InstanceNormalization, native in TensorRT)."""
    for name, child in module.named_children():
        if isinstance(child, nn.GroupNorm) and child.num_groups == child.num_channels:
            inorm = nn.InstanceNorm2d(child.num_channels, eps=child.eps, affine=True)
            inorm.load_state_dict(child.state_dict())
            setattr(module, name, _Fp32Norm(inorm.float()) if fp32_norm else inorm)
        else:
            _swap_norms(child, fp32_norm)


def deployable_generator(generator: Generator, precision: str = "fp32", emulate_fp16: bool = False) -> Generator:
    """A copy in eval mode with spectral norm baked in and export-friendly norms.

    With `emulate_fp16` an FP16 generator keeps FP32 convolutions whose weights are rounded
    to FP16 values: run it under `HalfEmulation` for FP16 numerics at FP32 speed on a CPU.
    """
    g = baked_generator(generator)
    # The entry block stays FP32: it runs on the baked image and is constant-folded.
    _swap_norms(g.entry, fp32_norm=False)
    for part in (g.down, g.bottleneck, g.up, g.final):
        _swap_norms(part, fp32_norm=precision == "fp16")  # normalisation stays FP32 ...
        if precision == "fp16":
            for module in part.modules():
                if isinstance(module, nn.Conv2d):
                    # ... convolutions run in FP16 (or in FP32 on FP16 values, emulated)
                    if emulate_fp16:
                        round_parameters_(module)
                    else:
                        module.half()
    return g


class RetargetGraph(nn.Module):
    """forward(size, image=None, homography=None) -> retargeted image (see ExportSpec).

    `emulate_fp16=True` gives an FP16 spec's numerics without FP16 kernels (ingan/model/
    precision.py): the check of FP16 arithmetic on a CPU. It is never exported.
    """

    def __init__(self, generator: Generator, image: torch.Tensor | None, spec: ExportSpec,
                 emulate_fp16: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.emulate_fp16 = emulate_fp16 and spec.precision == "fp16"
        self.generator = deployable_generator(generator, spec.precision, self.emulate_fp16)
        self.multiple = generator.config.size_multiple
        self.min_side = generator.config.min_size
        if spec.image_input:
            self.register_buffer("image", torch.zeros(0), persistent=False)
        else:
            if image is None:
                raise ValueError("a baked-image graph needs the training image")
            # [1, 3, H, W] in [-1, 1]; the entry block on it is constant-folded by the runtimes.
            self.register_buffer("image", image.float(), persistent=False)

    def forward(
        self, size: torch.Tensor, image: torch.Tensor | None = None, homography: torch.Tensor | None = None
    ) -> torch.Tensor:
        spec = self.spec
        image = image * 2.0 - 1.0 if image is not None else self.image

        height = size[0].item()
        width = size[1].item()
        # Bounds for the exporter's symbolic shapes (they also keep instance norm's
        # "more than one value per channel" check provable).
        torch._check(height >= self.min_side)
        torch._check(width >= self.min_side)
        torch._check(height <= MAX_SIDE)
        torch._check(width <= MAX_SIDE)
        m = self.multiple
        inner_h = (height + m - 1) // m * m
        inner_w = (width + m - 1) // m * m

        g = self.generator
        features = g.encode(image)
        if homography is None:
            features = F.interpolate(features, size=(inner_h, inner_w), mode="bilinear", align_corners=False)
        else:
            grid = _grid(homography.float(), inner_h, inner_w)
            features = F.grid_sample(features, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        if self.emulate_fp16:
            with HalfEmulation(torch.float16):
                out = g.synthesize(round_through(features, torch.float16))
        elif spec.precision == "fp16":
            out = g.synthesize(features.half()).float()
        else:
            out = g.synthesize(features)
        top = (inner_h - height) // 2
        left = (inner_w - width) // 2
        out = out[:, :, top : top + height, left : left + width]
        out = (out + 1.0) * 0.5  # [0, 1]
        if spec.output == "float":
            return out
        # Transpose in float, then Cast last: TensorRT takes UINT8 only at I/O and in Cast.
        return (out.permute(0, 2, 3, 1) * 255.0).round().clamp(0.0, 255.0).to(torch.uint8)


def _grid(homography: torch.Tensor, height: torch.SymInt | int, width: torch.SymInt | int) -> torch.Tensor:
    return homography_grid(homography, height, width)
