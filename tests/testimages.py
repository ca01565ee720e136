"""Synthetic test images: structure a tiny InGAN can see, no files needed."""

from __future__ import annotations

import numpy as np


def synthetic_image(height: int = 48, width: int = 56, seed: int = 0) -> np.ndarray:
    """Repeated blobs on a gradient: structure a tiny InGAN can see, no files needed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([xx / width, yy / height, 0.5 * np.ones_like(xx)], axis=-1) * 120
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, 5)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[mask] = rng.uniform(120, 255, size=3)
    return img.clip(0, 255).astype(np.uint8)
