"""The maths of one InGAN iteration, shared by one image (Trainer) and a group (GroupTrainer).

A subclass holds G, D, their optimisers and the RNG streams, and says what a step reads
(`plan`, `real_input`, `homography_arrays`) and how its losses reduce: one image's losses
are scalars; a group's are one value per member (ingan/train/group.py), summed before
backward so that every member's parameters get exactly their own gradient.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ingan.model.warp import top_shift_homography
from ingan.train.config import RunOptions, TrainConfig
from ingan.train.schedule import lr_factor


@dataclass(frozen=True)
class StepPlan:
    """The host-side draws of one iteration (crop corner, output size, shifts, weights)."""

    iteration: int
    top: int
    left: int
    crop_hw: tuple[int, int]
    out_hw: tuple[int, int]
    shifts: tuple[float, float] | None
    weights: tuple[float, ...]  # D's per-scale mixing weights for this output size
    inverse: bool  # the extra inverse-reconstruction G step runs


@dataclass
class StepLosses:
    g_gan: float
    g_rec: float
    g_inverse: float
    d_real: float
    d_fake: float


def homography_pair(shifts: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Forward and inverse top-shift homographies as float32 (3, 3) arrays."""
    h = top_shift_homography(*shifts)
    return h.astype(np.float32), np.linalg.inv(h).astype(np.float32)


class TrainingStep:
    """One InGAN iteration over `G` and `D`: a G step, the extra inverse step (late), a D step."""

    config: TrainConfig
    options: RunOptions
    device: torch.device
    use_cuda: bool
    amp: bool
    channels_last: bool
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    iteration: int
    group_size: int = 1  # images trained by one step (channel-stacked, ingan/model/grouped.py)
    _graphs: Any = None  # CudaGraphSteps when options.cuda_graphs
    _pending: tuple[torch.Tensor, ...] = ()

    # ------------------------------------------------------- what a step reads
    def plan(self) -> Any:
        """Everything random or scheduled about the next iteration, drawn on the host
        (a StepPlan, or anything with its out_hw, crop_hw, weights, shifts and inverse)."""
        raise NotImplementedError

    def real_input(self, plan: Any) -> torch.Tensor:
        """The real crop(s) of this step, [1, 3 * group_size, c, c]."""
        raise NotImplementedError

    def homography_arrays(self, plan: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """Forward and inverse homographies, float32 [group_size, 3, 3] each (None: off)."""
        raise NotImplementedError

    def graph_generators(self) -> tuple[torch.Generator, ...]:
        """Non-default CUDA generators a step draws from (a CUDA graph must register them)."""
        return ()

    def _advance(self, seconds: float) -> None:
        """Count one finished iteration that took `seconds`."""
        raise NotImplementedError

    # --------------------------------------------------- how the losses reduce
    def _uniform_like(self, x: torch.Tensor) -> torch.Tensor:
        return torch.rand_like(x)

    def _mse(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(x, target)

    def _l1(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(x, target)

    def _total(self, loss: torch.Tensor) -> torch.Tensor:
        """What backward() runs on."""
        return loss

    def _zero_loss(self) -> torch.Tensor:
        return torch.zeros((), device=self.device)

    # ------------------------------------------------------------------ helpers
    def _autocast(self) -> contextlib.ExitStack:
        """bf16 autocast when enabled, and cuDNN on/off as the run options say (CUDA)."""
        stack = contextlib.ExitStack()
        if self.use_cuda:
            stack.enter_context(torch.backends.cudnn.flags(enabled=self.options.cudnn))
        if self.amp:
            # No weight-cast cache under CUDA graphs: cached casts would be graph-private tensors.
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.bfloat16,
                                               cache_enabled=self._graphs is None))
        return stack

    def _noise_like(self, x: torch.Tensor) -> torch.Tensor:
        return (self._uniform_like(x) - 0.5) * (2.0 * self.config.noise)

    def homographies(self, plan: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        arrays = self.homography_arrays(plan)
        if arrays is None:
            return None, None
        fwd, inv = arrays
        return torch.from_numpy(fwd).to(self.device), torch.from_numpy(inv).to(self.device)

    def _set_lr(self) -> None:
        factor = lr_factor(self.iteration, self.config)
        for opt, base in ((self.opt_g, self.config.g_lr), (self.opt_d, self.config.d_lr)):
            for group in opt.param_groups:
                if isinstance(group["lr"], torch.Tensor):  # capturable optimisers (CUDA graphs)
                    group["lr"].fill_(base * factor)
                else:
                    group["lr"] = base * factor

    # --------------------------------------------------------------------- step
    def step(self) -> tuple[torch.Tensor, ...]:
        """One iteration: a G step, the extra inverse step (late), then a D step."""
        started = time.perf_counter()
        self._set_lr()
        plan = self.plan()
        if self._graphs is not None:
            self._pending = self._graphs.run(plan)
        else:
            fwd_h, inv_h = self.homographies(plan)
            self._pending = self.compute_step(self.real_input(plan), plan, list(plan.weights), fwd_h, inv_h)
        self._advance(time.perf_counter() - started)
        return self._pending

    def compute_step(
        self,
        real: torch.Tensor,
        plan: Any,
        weights: list[float] | torch.Tensor,
        fwd_h: torch.Tensor | None,
        inv_h: torch.Tensor | None,
    ) -> tuple[torch.Tensor, ...]:
        """The maths of one iteration on given inputs; returns the five loss tensors.

        Gradients are zeroed in place, never freed, as the original's PyTorch 0.4-era
        zero_grad() did: Adam then keeps moving (by momentum) the discriminator scales a
        small output did not use, as in the original; and every tensor the step writes
        keeps its address, which CUDA graph capture and replay need.
        """
        cfg = self.config
        out_hw, crop_hw = plan.out_hw, plan.crop_hw

        # --- generator: fool D, and map back to the input (round trip).
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=False)
        # cached(): each spectral-normalised weight is computed (one power iteration) once
        # per step instead of once per forward call; on a GPU these tiny kernels dominate.
        with self._autocast(), parametrize.cached():
            fake = self.G(real + self._noise_like(real), out_hw, fwd_h)
            d_on_fake = self.D(fake, weights).float()
            rec = self.G(fake, crop_hw, inv_h).float()
        g_gan = self._mse(d_on_fake, torch.ones_like(d_on_fake))
        g_rec = self._l1(rec, real.float())
        self._total(g_gan + cfg.rec_weight * g_rec).backward()
        self.opt_g.step()

        g_inverse = self._zero_loss()
        if plan.inverse:
            # Trains only the inverse direction: the forward output is detached.
            self.opt_g.zero_grad(set_to_none=False)
            with self._autocast():
                inverse = self.G(fake.detach(), crop_hw, inv_h).float()
            g_inverse = self._l1(inverse, real.float()) * cfg.inverse_weight
            self._total(g_inverse).backward()
            self.opt_g.step()

        # --- discriminator: real crops -> 1, generated -> 0, same scale weights.
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=False)
        with self._autocast(), parametrize.cached():
            d_real = self.D(real + self._noise_like(real), weights).float()
            fake_in = fake.detach()
            d_fake = self.D(fake_in + self._noise_like(fake_in), weights).float()
        d_loss_real = self._mse(d_real, torch.ones_like(d_real))
        d_loss_fake = self._mse(d_fake, torch.zeros_like(d_fake))
        self._total(0.5 * (d_loss_real + d_loss_fake)).backward()
        self.opt_d.step()
        return (g_gan.detach(), g_rec.detach(), g_inverse.detach(), d_loss_real.detach(), d_loss_fake.detach())
