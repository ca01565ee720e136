"""Non-learned retargets that InGAN is compared against (numpy and Pillow only).

- `bicubic`: the whole image resized to the target size (a stretch or squeeze), Pillow
  BICUBIC. Keeps all content, distorts every object.
- `centre_crop`: per axis, the centre of the image where the target is smaller; where the
  target is larger, the image is extended symmetrically on both sides by mirror
  reflection (edge pixel repeated, numpy `symmetric` padding, repeated as often as
  needed). Keeps objects undistorted, loses content when shrinking and adds mirrored
  (flipped) copies when growing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image

from ingan.errors import ConfigError

__all__ = ["BASELINES", "bicubic", "centre_crop"]


def _check(image: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ConfigError(f"image must be an HxWx3 uint8 RGB array, got {array.shape} {array.dtype}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise ConfigError(f"size {w}x{h} must be positive")
    return h, w


def bicubic(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` resized to (height, width) with Pillow's bicubic filter."""
    h, w = _check(image, size)
    if (h, w) == image.shape[:2]:
        return np.ascontiguousarray(image).copy()
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.BICUBIC))


def _axis(length: int, target: int) -> tuple[slice, tuple[int, int]]:
    """(centre slice to keep, (before, after) mirror padding) for one axis."""
    if target <= length:
        start = (length - target) // 2
        return slice(start, start + target), (0, 0)
    extra = target - length
    return slice(0, length), (extra // 2, extra - extra // 2)


def centre_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The centre (height, width) of `image`; axes where the target is larger are mirror-padded."""
    h, w = _check(image, size)
    rows, pad_y = _axis(image.shape[0], h)
    cols, pad_x = _axis(image.shape[1], w)
    out = image[rows, cols]
    if pad_y != (0, 0) or pad_x != (0, 0):
        out = np.pad(out, (pad_y, pad_x, (0, 0)), mode="symmetric")
    return np.ascontiguousarray(out)


# name -> (function, label for reports)
BASELINES: dict[str, tuple[Callable[[np.ndarray, tuple[int, int]], np.ndarray], str]] = {
    "bicubic": (bicubic, "bicubic resize"),
    "centre_crop": (centre_crop, "centre crop / mirror pad"),
}
