"""Monitor PNGs: retargets of the whole training image at several aspect ratios."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingan.collage import frame, grid
from ingan.imageio import save_image
from ingan.train.trainer import Trainer

# (scale_y, scale_x) per tile, clipped to the range trained so far.
MONITOR_SCALES: tuple[tuple[float, float], ...] = ((1.0, 1.0), (1.0, 2.0), (1.0, 0.5), (0.5, 1.0), (1.5, 1.5), (1.5, 0.75))


def monitor_image(trainer: Trainer) -> np.ndarray:
    """Row 1: input (framed red), G at 1x1, wider, narrower. Row 2: shorter, bigger, taller."""
    lo, hi = trainer.trained_scale_range()
    tiles = []
    for sy, sx in MONITOR_SCALES:
        tiles.append(trainer.retarget(min(max(sy, lo), hi), min(max(sx, lo), hi)))
    first_row = [frame(trainer.image_pixels)] + tiles[:3]
    return grid([first_row, tiles[3:]])


def write_monitor(trainer: Trainer, out_dir: Path) -> Path:
    return save_image(monitor_image(trainer), out_dir / f"monitor_{trainer.iteration:06d}.png")
