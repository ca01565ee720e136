"""Every export validates itself: ONNX checker, strict shape inference, TensorRT lint,
and ONNX Runtime against the PyTorch generator at several sizes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ingan.errors import InganError, first_line

# Stated tolerances. FP32: outputs agree to within one uint8 level (float: 2e-3 of the
# [0, 1] range): FP32 reassociation differences are ~1e-4 and round to at most one level.
# FP16: PSNR against the FP32 PyTorch output, in dB on the [0, 1] range.
FP32_MAX_ABS = {"uint8": 1.0 / 255.0, "float": 2e-3}
FP16_MIN_PSNR_DB = 40.0


class ValidationError(InganError):
    """The exported graph is invalid or does not match the PyTorch generator."""


class ShapeMismatch(ValidationError):
    pass


class ToleranceExceeded(ValidationError):
    pass


@dataclass
class SizeCheck:
    size: list[int]  # [height, width]
    max_abs_diff: float  # on the [0, 1] scale
    psnr_db: float
    passed: bool


@dataclass
class ValidationReport:
    precision: str
    tolerance: str
    checks: list[SizeCheck] = field(default_factory=list)
    # FP16 only: the same FP16 graph's arithmetic in PyTorch. ONNX Runtime's CPU provider runs
    # FP16 nodes it has no FP16 kernel for in FP32 (it inserts casts), so `checks` alone would
    # not exercise FP16 arithmetic on a CPU machine. `fp16_arithmetic` says how it ran: native
    # FP16 on CUDA, or emulated in FP32 on the CPU (docs/export.md).
    fp16_emulation: list[SizeCheck] = field(default_factory=list)
    fp16_arithmetic: str = ""
    op_counts: dict[str, int] = field(default_factory=dict)
    lint: str = ""
    lint_findings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and all(c.passed for c in self.fp16_emulation)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        worst_diff = max((c.max_abs_diff for c in self.checks), default=0.0)
        worst_psnr = min((c.psnr_db for c in self.checks), default=math.inf)
        sizes = ", ".join(f"{c.size[1]}x{c.size[0]}" for c in self.checks)
        text = (f"ONNX Runtime vs PyTorch at {sizes}: max |diff| {worst_diff * 255:.2f}/255, "
                f"min PSNR {worst_psnr:.1f} dB ({self.tolerance})")
        if self.fp16_emulation:
            emulated = min(c.psnr_db for c in self.fp16_emulation)
            how = self.fp16_arithmetic.split(":")[0] or "PyTorch"
            text += f"; FP16 arithmetic in PyTorch ({how}): min PSNR {emulated:.1f} dB"
        return text


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two arrays on the [0, 1] scale."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def to_unit_range(output: np.ndarray, output_format: str) -> np.ndarray:
    """Model output -> float64 [N, H, W, 3] in [0, 1], whatever the output format."""
    if output_format == "uint8":
        return output.astype(np.float64) / 255.0
    return np.transpose(output.astype(np.float64), (0, 2, 3, 1))


def check_model(path: str | Path) -> "onnx.ModelProto":  # noqa: F821
    """onnx.checker (full) + strict shape/type inference; raise ValidationError on failure."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = first_line(exc)
        raise ValidationError(f"the exported ONNX graph is invalid: {first}") from None
    return model


def choose_sizes(
    image_hw: tuple[int, int], min_size: Sequence[int], max_size: Sequence[int]
) -> list[tuple[int, int]]:
    """A square, a wide and a tall output inside the range; the square's side is odd."""
    h, w = image_hw

    def clamp(value: float, axis: int) -> int:
        return int(min(max(round(value), min_size[axis]), max_size[axis]))

    side = int(round(0.75 * min(h, w))) | 1
    square = (clamp(side, 0), clamp(side, 1))
    wide = (clamp(h, 0), clamp(1.5 * w + 3, 1))
    tall = (clamp(1.5 * h + 5, 0), clamp(w, 1))
    sizes: list[tuple[int, int]] = []
    for s in (square, wide, tall):
        if s not in sizes:
            sizes.append(s)
    return sizes


def compare_outputs(
    reference: np.ndarray, candidate: np.ndarray, size: tuple[int, int], output_format: str, precision: str
) -> SizeCheck:
    if candidate.shape != reference.shape:
        raise ShapeMismatch(
            f"output shape {tuple(candidate.shape)} differs from PyTorch's {tuple(reference.shape)} at "
            f"{size[1]}x{size[0]}"
        )
    ref = to_unit_range(reference, output_format)
    got = to_unit_range(candidate, output_format)
    if not np.isfinite(got).all():
        raise ToleranceExceeded(f"the exported graph produced NaN/inf at {size[1]}x{size[0]}")
    diff = float(np.max(np.abs(ref - got)))
    quality = psnr(ref, got)
    if precision == "fp16":
        passed = quality >= FP16_MIN_PSNR_DB
    else:
        passed = diff <= FP32_MAX_ABS[output_format] + 1e-9
    return SizeCheck(size=[int(size[0]), int(size[1])], max_abs_diff=diff, psnr_db=round(quality, 2), passed=passed)


def tolerance_text(precision: str, output_format: str) -> str:
    if precision == "fp16":
        return f"FP16 tolerance: PSNR >= {FP16_MIN_PSNR_DB:g} dB vs the FP32 PyTorch output"
    return f"FP32 tolerance: max |diff| <= {FP32_MAX_ABS[output_format]:.2g} on the [0, 1] range"
