"""The InGAN generator (Shocher et al., ICCV 2019), shared by training, export and serving.

Layout (defaults = the paper): entry 7x7 conv -> resize or warp of the *feature map* to
the output size -> 3 x (3x3 conv, max-pool) -> 6 bottleneck res-blocks -> 3 x (nearest x2,
3x3 conv) with additive U-Net skips -> 7x7 conv -> tanh [-> colour calibration].

The optional per-channel colour calibration (ingan/model/calibration.py) is not a trained
weight: it is fitted after training, kept outside the state dict, and set with
`set_colour_calibration`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ingan.model.calibration import ColourCalibration, fit_from_moments
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
        self.colour_calibration: ColourCalibration | None = None
        # Non-persistent: the state dict stays the trained weights only (checkpoints keep
        # the calibration in their own field), but the buffers follow .to(device).
        self.register_buffer("_colour_gain", torch.ones(1, 3, 1, 1), persistent=False)
        self.register_buffer("_colour_offset", torch.zeros(1, 3, 1, 1), persistent=False)

    def set_colour_calibration(self, calibration: ColourCalibration | None) -> None:
        """Apply `calibration` to every output from now on (None: the raw tanh output)."""
        self.colour_calibration = calibration
        if calibration is not None:
            device = self._colour_gain.device
            self._colour_gain = torch.tensor(calibration.gain, dtype=torch.float32, device=device).view(1, 3, 1, 1)
            self._colour_offset = torch.tensor(calibration.offset, dtype=torch.float32,
                                               device=device).view(1, 3, 1, 1)

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
        out = self.final(x)
        if self.colour_calibration is not None:
            out = (out * self._colour_gain.to(out.dtype) + self._colour_offset.to(out.dtype)).clamp(-1.0, 1.0)
        return out

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


@torch.no_grad()
def fit_colour_calibration(generator: Generator, image: torch.Tensor, iteration: int = 0) -> ColourCalibration:
    """Fit the calibration on the training image `image` ([1, 3, H, W] in [-1, 1]).

    Runs the raw generator once at the image's own size, in eval mode and FP32, and leaves
    the generator exactly as it was (mode, calibration, no RNG use): safe mid-training.
    """
    previous, was_training = generator.colour_calibration, generator.training
    generator.colour_calibration = None
    generator.eval()
    try:
        with torch.autocast(device_type=image.device.type, enabled=False):
            raw = generator(image.float(), tuple(image.shape[2:])).double()
    finally:
        generator.colour_calibration = previous
        generator.train(was_training)
    target = image.double()
    t_mean, t_std = _channel_moments(target)
    r_mean, r_std = _channel_moments(raw)
    calibration = fit_from_moments(t_mean, t_std, r_mean, r_std, iteration)
    # The clamp to [-1, 1] moves the moments where the affine pushes values past it (dark or
    # bright images). Fixed-point steps: aim the unclamped mean/std off by what the clamp
    # costs, until the clamped output matches.
    for _ in range(10):
        gain = torch.tensor(calibration.gain, dtype=raw.dtype, device=raw.device).view(1, 3, 1, 1)
        offset = torch.tensor(calibration.offset, dtype=raw.dtype, device=raw.device).view(1, 3, 1, 1)
        o_mean, o_std = _channel_moments((raw * gain + offset).clamp(-1.0, 1.0))
        if max(abs(a - b) for a, b in zip(o_mean + o_std, t_mean + t_std)) < 1e-5:
            break
        aim_mean = [g * rm + o + tm - om for g, rm, o, tm, om in
                    zip(calibration.gain, r_mean, calibration.offset, t_mean, o_mean)]
        aim_std = [g * rs * ts / max(os_, 1e-6) for g, rs, ts, os_ in zip(calibration.gain, r_std, t_std, o_std)]
        calibration = fit_from_moments(aim_mean, aim_std, r_mean, r_std, iteration)
    return calibration


def _channel_moments(t: torch.Tensor) -> tuple[list[float], list[float]]:
    return t.mean(dim=(0, 2, 3)).tolist(), t.std(dim=(0, 2, 3), unbiased=False).tolist()
