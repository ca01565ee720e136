"""Output-size arithmetic shared by training, export and the runtimes (no torch)."""

from __future__ import annotations

import math


def round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def internal_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The network computes at the next multiple of `multiple` and centre-crops back."""
    return round_up(height, multiple), round_up(width, multiple)


def crop_offsets(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Top/left offsets of the centre crop from the internal size to the exact size."""
    ih, iw = internal_size(height, width, multiple)
    return (ih - height) // 2, (iw - width) // 2


def scaled_size(height: int, width: int, scale_y: float, scale_x: float) -> tuple[int, int]:
    """Exact output size for a retarget by (scale_y, scale_x): rounded, at least 1."""
    return max(1, int(math.floor(height * scale_y + 0.5))), max(1, int(math.floor(width * scale_x + 0.5)))


def default_size_range(
    image_hw: tuple[int, int], scale_range: tuple[float, float], min_side: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(min, max) output (height, width): the trained scale range applied to the image."""
    h, w = image_hw
    lo, hi = scale_range
    low = (max(math.ceil(lo * h), min_side), max(math.ceil(lo * w), min_side))
    high = (max(math.floor(hi * h), low[0]), max(math.floor(hi * w), low[1]))
    return low, high
