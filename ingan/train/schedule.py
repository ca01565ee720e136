"""Per-iteration schedules: learning rate, output-size curriculum, random sizes."""

from __future__ import annotations

import math

import torch

from ingan.model.sizes import round_up
from ingan.train.config import TrainConfig


def lr_factor(iteration: int, config: TrainConfig) -> float:
    """1 until lr_decay_start, then linear to 0 at `iters` (the original's LRPolicy)."""
    start, end = config.lr_decay_start, config.iters
    if end <= start:
        return 1.0
    return 1.0 - max(0.0, (iteration - start) / (end - start))


def curriculum_progress(iteration: int, config: TrainConfig) -> float:
    if config.curriculum_iters <= 0:
        return 1.0
    return min(max(iteration / config.curriculum_iters, 0.0), 1.0)


def scale_range(iteration: int, config: TrainConfig) -> tuple[float, float]:
    """The output/input scale range trained at this iteration."""
    t = curriculum_progress(iteration, config)
    return 1.0 + (config.min_scale - 1.0) * t, 1.0 + (config.max_scale - 1.0) * t


def sample_output_size(
    iteration: int, crop_hw: tuple[int, int], config: TrainConfig, generator: torch.Generator
) -> tuple[int, int]:
    """crop * U(lo, hi) per axis, rounded up to the architecture's multiple (then snapped
    to `size_step` when the config sets one)."""
    lo, hi = scale_range(iteration, config)
    u = torch.rand(2, generator=generator).tolist()
    m = config.generator.size_multiple
    height, width = (
        snap_side(max(round_up(math.ceil(side * (lo + (hi - lo) * ui)), m), config.generator.min_size), config)
        for side, ui in zip(crop_hw, u)
    )
    return height, width


def snap_side(side: int, config: TrainConfig) -> int:
    """Nearest multiple of config.size_step, never below one step or the generator's
    minimum; unchanged when size_step is 0. Ties go to the even multiple, so snapping
    adds no bias to the mean size."""
    step = config.size_step
    if step <= 0:
        return side
    quotient, remainder = divmod(side, step)
    if 2 * remainder > step or (2 * remainder == step and quotient % 2):
        quotient += 1
    return max(step * quotient, step, config.generator.min_size)


def sample_shifts(iteration: int, config: TrainConfig, generator: torch.Generator) -> tuple[float, float] | None:
    """Top-corner shifts for homography augmentation, or None when it is off."""
    if config.max_transform <= 0:
        return None
    m = config.max_transform * curriculum_progress(iteration, config)
    u = torch.rand(2, generator=generator).tolist()
    return (-m + 2 * m * u[0], -m + 2 * m * u[1])
