"""InGAN's multi-scale patch discriminator and its scale-weight schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ingan.model.config import DiscriminatorConfig
from ingan.model.layers import conv, lrelu, norm


def count_scales(short_side: int, min_size: int, scale_factor: float, limit: int) -> int:
    """How many 1/scale_factor steps fit before the short side drops below `min_size`."""
    if short_side <= min_size:
        return 1
    return max(1, min(math.ceil(math.log(short_side / min_size) / math.log(scale_factor)), limit))


def scale_weights(
    iteration: int, short_side: int, config: DiscriminatorConfig, even_at: int = 25_000
) -> list[float]:
    """Mixing weights of the per-scale maps for an input with this short side.

    w_k ~ f**k with f = sf**((even_at - it) / even_at): coarse scales dominate early,
    all are equal at `even_at`, fine scales dominate after (the original does not clamp).
    """
    n = count_scales(short_side, config.min_input_size, config.scale_factor, config.max_scales)
    factor = config.scale_factor ** ((even_at - iteration) / even_at)
    raw = [factor**k for k in range(n)]
    total = sum(raw)
    return [w / total for w in raw]


class PatchNet(nn.Module):
    """One scale: unpadded 3x3, strided 3x3, 3x3, 1x1 -> sigmoid (receptive field 13 px)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(3, c, 3), norm(c), lrelu(),
            conv(c, 2 * c, 3, stride=2), norm(2 * c), lrelu(),
            conv(2 * c, 2 * c, 3), norm(2 * c), lrelu(),
            conv(2 * c, 1, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiScaleDiscriminator(nn.Module):
    """One PatchNet per scale; their maps are upsampled to scale 0's and mixed."""

    def __init__(self, real_crop_size: int, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config or DiscriminatorConfig()
        # No more scales than the real crops support: deeper nets would only see fakes.
        n = count_scales(real_crop_size, self.config.min_real_size, self.config.scale_factor, self.config.max_scales)
        self.nets = nn.ModuleList(PatchNet(self.config.base_channels) for _ in range(n))

    def forward(self, x: torch.Tensor, weights: list[float]) -> torch.Tensor:
        out = self.nets[0](x) * weights[0]
        map_size = out.shape[2:]
        # zip truncates like the original: weights beyond the available nets are dropped.
        for i, (net, w) in enumerate(zip(self.nets[1:], weights[1:]), start=1):
            small = F.interpolate(
                x, scale_factor=self.config.scale_factor ** (-i), mode="bilinear", align_corners=False
            )
            out = out + F.interpolate(net(small), size=map_size, mode="bilinear", align_corners=False) * w
        return out
