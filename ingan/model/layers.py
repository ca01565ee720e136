"""Building blocks shared by the generator and the discriminator."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize


class SpectralNorm(nn.Module):
    """Weight / its largest singular value, by one power iteration per training forward.

    Same maths as `torch.nn.utils.parametrizations.spectral_norm`, but always in fp32
    with autocast off: under bf16 autocast torch's version computes sigma from a bf16
    matrix-vector product (and mixes dtypes in its dot product).
    """

    def __init__(self, weight: torch.Tensor, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = eps
        matrix = weight.detach().flatten(1).float()
        self.register_buffer("_u", F.normalize(matrix.new_empty(matrix.shape[0]).normal_(0, 1), dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(matrix.new_empty(matrix.shape[1]).normal_(0, 1), dim=0, eps=eps))
        self._power_iteration(matrix, 15)

    @torch.no_grad()
    def _power_iteration(self, matrix: torch.Tensor, steps: int) -> None:
        for _ in range(steps):
            self._u.copy_(F.normalize(torch.mv(matrix, self._v), dim=0, eps=self.eps))
            self._v.copy_(F.normalize(torch.mv(matrix.t(), self._u), dim=0, eps=self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            matrix = weight.flatten(1).float()
            if self.training:
                self._power_iteration(matrix.detach(), 1)
            # clone: the in-place updates above must not invalidate autograd's saved u/v
            u, v = self._u.clone(memory_format=torch.contiguous_format), self._v.clone(memory_format=torch.contiguous_format)
            sigma = torch.dot(u, torch.mv(matrix, v))
            return (weight.float() / sigma).to(weight.dtype)


def _spectral_norm(module: nn.Conv2d) -> nn.Conv2d:
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight))
    return module


def conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, sn: bool = True) -> nn.Module:
    """A conv initialised like the original (xavier-normal, gain 0.01, zero bias).

    The init runs *before* spectral norm is attached so the power-iteration vectors
    start from the real weight. Spectral norm cancels the 0.01 scale; only convs
    without it (the final one) start near zero.
    """
    layer = nn.Conv2d(in_ch, out_ch, kernel_size=kernel, stride=stride, bias=True)
    nn.init.xavier_normal_(layer.weight, gain=0.01)
    nn.init.zeros_(layer.bias)
    return _spectral_norm(layer) if sn else layer


def norm(channels: int) -> nn.Module:
    """Per-image normalisation with a learned affine.

    The original uses BatchNorm2d in train mode at batch 1, at training *and* test time;
    that is exactly instance norm with BN's gamma/beta (see docs/model.md). InstanceNorm2d
    exports to ONNX InstanceNormalization and keeps batches of several images independent.
    """
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


def lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def is_spectral_normed(module: nn.Module) -> bool:
    return hasattr(module, "parametrizations") and hasattr(module.parametrizations, "weight")


@torch.no_grad()
def bake_spectral_norm(model: nn.Module) -> nn.Module:
    """Replace every spectral-norm parametrisation by its current normalised weight.

    Call on a model in eval mode: then the stored power-iteration vectors are used as
    they are, so the baked weights equal what eval-mode forward computes.
    """
    if model.training:
        raise RuntimeError("bake_spectral_norm needs eval mode (no power iteration)")
    for module in model.modules():
        if is_spectral_normed(module):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model
