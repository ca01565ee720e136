"""The InGAN generator (Shocher et al., ICCV 2019), shared by training, export and serving.

Layout (defaults = the paper): entry 7x7 conv -> resize or warp of the *feature map* to
the output size -> 3 x (3x3 conv, max-pool) -> 6 bottleneck res-blocks -> 3 x (nearest x2,
3x3 conv) with additive U-Net skips -> 7x7 conv -> tanh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ingan.model.config import GeneratorConfig
from ingan.model.layers import conv, lrelu, norm
from ingan.model.sizes import internal_size
from ingan.model.warp import warp


class ResBlock(nn.Module):
    """1x1 squeeze, 3x3, 1x1 expand, each normalised; identity skip, no final activation."""

    def __init__(self, dim: int, sn: bool) -> None:
        super().__init__()
        inner = max(dim // 4, 1)
        self.body = nn.Sequential(
            conv(dim, inner, 1, sn=sn), norm(inner), lrelu(),
            nn.ReflectionPad2d(1), conv(inner, inner, 3, sn=sn), norm(inner), lrelu(),
            conv(inner, dim, 1, sn=sn), norm(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _conv_block(in_ch: int, out_ch: int, sn: bool) -> nn.Sequential:
    return nn.Sequential(nn.ReflectionPad2d(1), conv(in_ch, out_ch, 3, sn=sn), norm(out_ch), lrelu())


class Generator(nn.Module):
    """G(x; size[, homography]) -> image of exactly `size`, values in [-1, 1].

    The architecture needs sides that are multiples of 2**n_downsampling; other sizes
    are computed at the next multiple and centre-cropped (at most 7 px at the defaults),
    which keeps every object at the same scale as an exact-multiple request would.
    """

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or GeneratorConfig()
        c, sn = self.config.base_channels, self.config.spectral_norm
        n_down = self.config.n_downsampling
        self.entry = nn.Sequential(nn.ReflectionPad2d(3), conv(3, c, 7, sn=sn), norm(c), lrelu())
        self.down = nn.ModuleList(_conv_block(c * 2**i, c * 2 ** (i + 1), sn) for i in range(n_down))
        width = c * 2**n_down
        self.bottleneck = nn.Sequential(*(ResBlock(width, sn) for _ in range(self.config.n_blocks)))
        self.up = nn.ModuleList(
            _conv_block(c * 2 ** (i + 1), c * 2**i, sn) for i in reversed(range(n_down))
        )
        self.final = nn.Sequential(nn.ReflectionPad2d(3), conv(c, 3, 7, sn=False), nn.Tanh())

    # The three stages are public so the exporter can compose them with graph-side size logic.
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Entry block: image [N,3,H,W] in [-1,1] -> features at the input resolution."""
        return self.entry(image)

    def synthesize(self, features: torch.Tensor) -> torch.Tensor:
        """Everything after the geometric step; `features` sides must be size multiples."""
        pyramid = [features]
        x = features
        for block in self.down:
            x = F.max_pool2d(block(x), 2)
            pyramid.append(x)
        x = self.bottleneck(x)
        for i, block in enumerate(self.up):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(x) + pyramid[-i - 2]
        return self.final(x)

    def forward(
        self,
        image: torch.Tensor,
        size: tuple[int, int],
        homography: torch.Tensor | None = None,
    ) -> torch.Tensor:
        height, width = int(size[0]), int(size[1])
        if min(height, width) < self.config.min_size:
            raise ValueError(
                f"output size {width}x{height} is below the generator's minimum side "
                f"{self.config.min_size}"
            )
        ih, iw = internal_size(height, width, self.config.size_multiple)
        features = self.encode(image)
        if homography is None:
            features = F.interpolate(features, size=(ih, iw), mode="bilinear", align_corners=False)
        else:
            features = warp(features, homography, ih, iw)
        out = self.synthesize(features)
        if (ih, iw) != (height, width):
            top, left = (ih - height) // 2, (iw - width) // 2
            out = out[:, :, top : top + height, left : left + width]
        return out
