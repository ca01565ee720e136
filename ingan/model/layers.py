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
        # False: each power iteration rebinds u/v to new tensors (fewest kernels, eager).
        # True: it writes them in place, so a captured CUDA graph updates the real buffers
        # on every replay instead of re-reading stale ones (set_in_place_power_iteration).
        self.in_place = False
        matrix = weight.detach().flatten(1).float()
        if matrix.device.type == "meta":  # a shape-only build (checkpoint checks): no numbers to iterate
            self.register_buffer("_u", matrix.new_empty(matrix.shape[0]))
            self.register_buffer("_v", matrix.new_empty(matrix.shape[1]))
            return
        self.register_buffer("_u", F.normalize(matrix.new_empty(matrix.shape[0]).normal_(0, 1), dim=0, eps=eps))
        self.register_buffer("_v", F.normalize(matrix.new_empty(matrix.shape[1]).normal_(0, 1), dim=0, eps=eps))
        self._power_iteration(matrix, 15)

    @torch.no_grad()
    def _power_iteration(self, matrix: torch.Tensor, steps: int) -> None:
        # New tensors are assigned instead of copied in place: no device copies, and
        # autograd's saved u/v are never overwritten (so no clones are needed).
        u, v = self._u, self._v
        for _ in range(steps):
            u = F.normalize(torch.mv(matrix, v), dim=0, eps=self.eps)
            v = F.normalize(torch.mv(matrix.t(), u), dim=0, eps=self.eps)
        if self.in_place:
            self._u.copy_(u)
            self._v.copy_(v)
        else:
            self._u, self._v = u, v

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # "meta" (shape-only builds, ingan/model/checkpoint.py) has no autocast to switch off.
        device_type = weight.device.type if weight.device.type != "meta" else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            matrix = weight.flatten(1).float()
            if self.training:
                self._power_iteration(matrix.detach(), 1)
            sigma = torch.dot(self._u, torch.mv(matrix, self._v))
            return (weight.float() / sigma).to(weight.dtype)


def set_in_place_power_iteration(model: nn.Module, enabled: bool) -> int:
    """Switch every SpectralNorm in `model` to in-place u/v updates; returns how many."""
    found = 0
    for module in model.modules():
        if isinstance(module, SpectralNorm):
            module.in_place = enabled
            found += 1
    return found


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
    if layer.weight.device.type != "meta":  # a shape-only build has no values to initialise
        nn.init.xavier_normal_(layer.weight, gain=0.01)
        nn.init.zeros_(layer.bias)
    return _spectral_norm(layer) if sn else layer


def norm(channels: int) -> nn.Module:
    """Per-image, per-channel normalisation with a learned affine (instance norm).

    The original uses BatchNorm2d in train mode at batch 1, at training *and* test time;
    that is exactly instance norm with BN's gamma/beta (docs/model.md). GroupNorm with one
    channel per group is the same function in one fused kernel (InstanceNorm2d repeats
    its affine per sample and calls batch norm: several launches), and its parameters
    (`weight`, `bias`) are named like InstanceNorm2d's, so either can load the weights.
    """
    return nn.GroupNorm(channels, channels, eps=1e-5, affine=True)


def lrelu() -> nn.Module:
    return nn.LeakyReLU(0.2)


def is_spectral_normed(module: nn.Module) -> bool:
    return hasattr(module, "parametrizations") and hasattr(module.parametrizations, "weight")


@torch.no_grad()
def baked_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with every spectral-normalised weight replaced by W / sigma.

    Uses the stored power-iteration vectors (eval-mode maths), so the result equals what
    the model computes in eval mode. Load it into the same architecture built without
    spectral norm. (Removing parametrisations in place is avoided on purpose: it edits
    the class that deep copies share.)
    """
    was_training = model.training
    model.eval()
    try:
        baked: dict[str, torch.Tensor] = {}
        for key, value in model.state_dict().items():
            if ".parametrizations.weight." in key:
                if key.endswith(".parametrizations.weight.original"):
                    prefix = key[: -len(".parametrizations.weight.original")]
                    baked[prefix + ".weight"] = model.get_submodule(prefix).weight.detach().clone()
                continue
            baked[key] = value.detach().clone()
        return baked
    finally:
        model.train(was_training)
