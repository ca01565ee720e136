"""Homography warps for non-rectangular retargeting.

A homography here maps *output* coordinates to *input* coordinates, both normalised
to [-1, 1] with align_corners=True (x right, y down), which is what `grid_sample`
consumes. Building the grid from `arange` of the output size keeps it exportable
(ONNX Range on the run-time size, no AffineGrid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ingan.homography import corner_homography, top_shift_homography  # noqa: F401  (re-export)


def homography_grid(homography: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid [N, H, W, 2] for `grid_sample(..., align_corners=True)`.

    Args:
        homography: [N, 3, 3] maps output (x, y, 1) to input (x', y', w').
    """
    dtype = homography.dtype
    device = homography.device
    # arange-based so exporters emit Range on the run-time size, not a baked constant.
    xs = torch.arange(width, device=device, dtype=dtype) * (2.0 / max(width - 1, 1)) - 1.0
    ys = torch.arange(height, device=device, dtype=dtype) * (2.0 / max(height - 1, 1)) - 1.0
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    ones = torch.ones_like(gx)
    points = torch.stack((gx, gy, ones), dim=-1).reshape(1, height * width, 3)
    mapped = points @ homography.transpose(1, 2)  # [N, HW, 3]
    grid = mapped[..., :2] / mapped[..., 2:3]
    return grid.reshape(homography.shape[0], height, width, 2)


def warp(features: torch.Tensor, homography: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resample `features` onto an (height, width) output through `homography`.

    Reflection padding stands in for the original's reflect pre-padding: samples that
    fall outside the input mirror back into it instead of smearing the border.
    """
    grid = homography_grid(homography.to(features.dtype), height, width)
    batch = features.shape[0]
    if homography.shape[0] != batch:
        # Channel-stacked models (ingan/model/grouped.py): [1, G*C, H, W] features, one
        # homography per member; each member's C channels follow its own.
        members = features.reshape(homography.shape[0], -1, *features.shape[2:])
        out = F.grid_sample(members, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
        return out.reshape(batch, -1, height, width)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
