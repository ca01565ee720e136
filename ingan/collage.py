"""Side-by-side image strips and grids (numpy only, shared by training and serving)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

FRAME_RGB = (255, 0, 0)


def frame(image: np.ndarray, width: int = 3, color: tuple[int, int, int] = FRAME_RGB) -> np.ndarray:
    """The image with a coloured border drawn inside its edges (size unchanged)."""
    out = image.copy()
    w = max(1, min(width, min(image.shape[:2]) // 4))
    out[:w], out[-w:], out[:, :w], out[:, -w:] = color, color, color, color
    return out


def grid(rows: Sequence[Sequence[np.ndarray | None]], margin: int = 6, background: int = 255) -> np.ndarray:
    """Tile images into rows (top-aligned, left-aligned); None leaves a gap."""
    row_heights = [max((im.shape[0] for im in row if im is not None), default=0) for row in rows]
    n_cols = max(len(row) for row in rows)
    col_widths = [
        max((row[c].shape[1] for row in rows if c < len(row) and row[c] is not None), default=0)
        for c in range(n_cols)
    ]
    height = sum(row_heights) + margin * (len(rows) + 1)
    width = sum(col_widths) + margin * (n_cols + 1)
    canvas = np.full((height, width, 3), background, dtype=np.uint8)
    y = margin
    for row, rh in zip(rows, row_heights):
        x = margin
        for c, cw in enumerate(col_widths):
            im = row[c] if c < len(row) else None
            if im is not None:
                canvas[y : y + im.shape[0], x : x + im.shape[1]] = im
            x += cw + margin
        y += rh + margin
    return canvas
