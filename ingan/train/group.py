"""Many images in one training step: G independent InGANs, channel-stacked (ingan/model/grouped.py).

Why: a batch-1 InGAN step is bound by kernel launches on a GPU (docs/training.md, "GPU
speed"), so G images' generators and discriminators trained by one grouped step cost
about one launch sequence instead of G.

What is shared and what is not. Every member keeps its own weights, optimiser state,
image and random streams; each member is a single-image `Trainer` (its holder: image,
crop corners, checkpoint, monitors), while the group trains stacked copies of the
members' models. Members share, by construction:
  * the training config, except the seed (so the crop size, schedules and iteration);
  * each step's random output size, hence D's scale weights: the first member's (the
    group's *leader*) draw. Every member still draws its own size and discards it, so
    its stream moves exactly as in a single run.
Everything else is drawn per member from that member's own streams, exactly as the
single-image run with the member's seed would draw it: crop corner and homography shifts
from its data stream, the three input-noise tensors from its noise stream (the global
RNG state a single run would have after building its models). So a member's draws do not
depend on the group's size or order, and a group of one *is* the single-image run.

Checkpoints. `save()` writes each member's ordinary ckpt.pt (Trainer.state(): export,
run, eval and `--resume` read it as any other), its rng entry holding the member's own
streams. Resume: `from_checkpoints` rebuilds the members with Trainer.from_checkpoint and
re-stacks them; an uninterrupted group and a saved-and-resumed group take bit-identical
steps on CPU. A member's checkpoint resumed alone (`ingan-train --resume`) continues the
member's own streams exactly, but from then on with its own output sizes instead of the
leader's: a valid continuation, not the one the group would have taken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ingan.errors import ConfigError
from ingan.model.checkpoint import Checkpoint, save_checkpoint
from ingan.model.grouped import member_state_dicts, stack_modules, stack_optimizer_states, unstack_optimizer_state
from ingan.train.config import RunOptions, TrainConfig
from ingan.train.step import StepLosses, StepPlan, TrainingStep, homography_pair
from ingan.train.trainer import Trainer, load_optimizer_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupPlan:
    """One group iteration: the shared draws, and each member's own plan (with the shared size)."""

    iteration: int
    crop_hw: tuple[int, int]
    out_hw: tuple[int, int]
    weights: tuple[float, ...]
    inverse: bool
    members: tuple[StepPlan, ...]

    @property
    def shifts(self) -> tuple[tuple[float, float], ...] | None:
        """Each member's homography shifts, or None when homographies are off."""
        if self.members[0].shifts is None:
            return None
        return tuple(p.shifts for p in self.members)  # type: ignore[misc]


@dataclass
class Member:
    """One image of a group: its single-image trainer and its input-noise stream."""

    trainer: Trainer
    noise: torch.Generator

    @classmethod
    def capture(cls, trainer: Trainer) -> "Member":
        """Adopt `trainer`, just built or resumed: the global RNG state now is where the
        single run would draw its next input noise from (it draws from the global RNG)."""
        device = trainer.device
        noise = torch.Generator(device=device)
        noise.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
        return cls(trainer, noise)

    @classmethod
    def new(cls, pixels: np.ndarray, config: TrainConfig, options: RunOptions, name: str) -> "Member":
        """A new image's member: `Trainer(pixels, config)` adopted (its ConfigError names the image)."""
        try:
            # The group, not each member, captures CUDA graphs.
            trainer = Trainer(pixels, config, replace(options, cuda_graphs=False), image_name=name)
        except ConfigError as exc:
            raise ConfigError(f"'{name}': {exc}") from None
        trainer.options = options
        return cls.capture(trainer)

    @classmethod
    def resumed(cls, ckpt: Checkpoint, options: RunOptions, iters: int | None = None,
                even_scale_weights: bool = False) -> "Member":
        """A member rebuilt from its checkpoint, as Trainer.from_checkpoint rebuilds one run."""
        trainer = Trainer.from_checkpoint(ckpt, replace(options, cuda_graphs=False), iters=iters,
                                          even_scale_weights=even_scale_weights)
        trainer.options = options
        return cls.capture(trainer)


def _schedule(config: TrainConfig) -> TrainConfig:
    return replace(config, seed=0)


class GroupTrainer(TrainingStep):
    """Trains `members` together, one grouped step per iteration (see the module docstring)."""

    def __init__(self, members: Sequence[Member], options: RunOptions | None = None) -> None:
        if not members:
            raise ConfigError("a training group needs at least one image")
        self.members = list(members)
        self.options = options or self.members[0].trainer.options
        first = self.members[0].trainer
        self.config = first.config
        self.device = first.device
        self.use_cuda = self.device.type == "cuda"
        self.amp = self.options.amp and self.use_cuda
        self.channels_last = False
        self.group_size = len(self.members)
        if self.options.channels_last and self.use_cuda:
            raise ConfigError("--channels-last is not supported for a group of images; drop it")
        for m in self.members[1:]:
            t = m.trainer
            if _schedule(t.config) != _schedule(self.config):
                raise ConfigError(f"'{t.image_name}' was trained with another config than '{first.image_name}'; "
                                  "a group trains images with one config (only the seed may differ)")
            if t.iteration != first.iteration:
                raise ConfigError(f"'{t.image_name}' is at iteration {t.iteration:,}, '{first.image_name}' at "
                                  f"{first.iteration:,}; a group trains images at the same iteration")
            if t.device != self.device:
                raise ConfigError("the members of a group must be on one device")
        if self.use_cuda and not self.options.cudnn and self.group_size > 1:
            # Measured on an H200 (benchmarks/results/2026-12-04-h200-train-group): at G=4 this
            # was still faster than cuDNN's per-shape set-up; larger groups were measured with cuDNN.
            log.info("cuDNN off: each grouped convolution runs one kernel per image")
        self.G = stack_modules([m.trainer.G for m in self.members])
        self.D = stack_modules([m.trainer.D for m in self.members])
        betas = (self.config.beta1, self.config.beta2)
        fused = self.use_cuda or None
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.config.g_lr, betas=betas, fused=fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.config.d_lr, betas=betas, fused=fused)
        for opt, name in ((self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
            states = [getattr(m.trainer, name).state_dict() for m in self.members]
            if states[0]["state"]:
                try:
                    load_optimizer_state(opt, stack_optimizer_states(states), fused=fused)
                except ValueError as exc:
                    raise ConfigError(f"cannot train these images as one group: {exc}") from None
        self._pending = ()
        self._synced_at: int | None = None  # the iteration the members' own models were last synced at
        self._graphs = None
        if self.options.cuda_graphs:
            from ingan.train.cuda_graphs import CudaGraphSteps

            self._graphs = CudaGraphSteps(self)

    # ------------------------------------------------------------ construction
    @classmethod
    def from_images(
        cls,
        images: Sequence[np.ndarray],
        config: TrainConfig,
        options: RunOptions | None = None,
        names: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> "GroupTrainer":
        """A new group; member i trains exactly as `Trainer(images[i], config with seeds[i])`
        (default: every member with config.seed, as one run per image would)."""
        options = options or RunOptions()
        names = list(names) if names is not None else [f"image{i}" for i in range(len(images))]
        seeds = list(seeds) if seeds is not None else [config.seed] * len(images)
        members = [Member.new(pixels, replace(config, seed=seed), options, name)
                   for pixels, name, seed in zip(images, names, seeds, strict=True)]
        return cls(members, options)

    @classmethod
    def from_checkpoints(
        cls, ckpts: Sequence[Checkpoint], options: RunOptions | None = None, iters: int | None = None,
        even_scale_weights: bool = False,
    ) -> "GroupTrainer":
        """Re-stack members from their checkpoints (as Trainer.from_checkpoint rebuilds one)."""
        options = options or RunOptions()
        members = [Member.resumed(ckpt, options, iters, even_scale_weights) for ckpt in ckpts]
        return cls(members, options)

    # ---------------------------------------------------------------- the step
    @property
    def iteration(self) -> int:  # type: ignore[override]
        return self.members[0].trainer.iteration

    @property
    def graph_stats(self) -> dict[str, Any] | None:
        return None if self._graphs is None else self._graphs.stats()

    def plan(self) -> GroupPlan:
        plans = [m.trainer.plan() for m in self.members]  # each from its own stream, as alone
        lead = plans[0]
        shared = tuple(replace(p, out_hw=lead.out_hw, weights=lead.weights) for p in plans)
        return GroupPlan(lead.iteration, lead.crop_hw, lead.out_hw, lead.weights, lead.inverse, shared)

    def real_input(self, plan: GroupPlan) -> torch.Tensor:
        crops = [m.trainer.real_input(p) for m, p in zip(self.members, plan.members)]
        return crops[0] if len(crops) == 1 else torch.cat(crops, dim=1)

    def homography_arrays(self, plan: GroupPlan) -> tuple[np.ndarray, np.ndarray] | None:
        shifts = plan.shifts
        if shifts is None:
            return None
        pairs = [homography_pair(s) for s in shifts]
        return np.stack([f for f, _ in pairs]), np.stack([i for _, i in pairs])

    def graph_generators(self) -> tuple[torch.Generator, ...]:
        return tuple(m.noise for m in self.members) if self.use_cuda else ()

    def _advance(self, seconds: float) -> None:
        for m in self.members:
            m.trainer.iteration += 1
            m.trainer.wall_time += seconds  # each image was trained for the whole step

    # Per-member draws and losses: every tensor is [1, G*k, H, W], member g's k channels together.
    def _uniform_like(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], x.shape[1] // self.group_size, *x.shape[2:])
        draws = [torch.rand(shape, generator=m.noise, device=x.device, dtype=x.dtype) for m in self.members]
        return draws[0] if len(draws) == 1 else torch.cat(draws, dim=1)

    def _mse(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (x - target).square().reshape(self.group_size, -1).mean(dim=1)

    def _l1(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (x - target).abs().reshape(self.group_size, -1).mean(dim=1)

    def _total(self, loss: torch.Tensor) -> torch.Tensor:
        return loss.sum()

    def _zero_loss(self) -> torch.Tensor:
        return torch.zeros(self.group_size, device=self.device)

    def losses(self) -> list[StepLosses]:
        """Each member's losses of the last step (one device sync)."""
        columns = torch.stack(self._pending).tolist()  # [5][G]
        result = []
        for m, values in zip(self.members, zip(*columns)):
            m.trainer.last_losses = StepLosses(*values)
            result.append(m.trainer.last_losses)
        return result

    # ------------------------------------------------------- members and saves
    def sync_members(self) -> None:
        """Copy the stacked weights and optimiser states into the members' own models and
        optimisers, so each member's trainer is exactly its image's training state (for its
        checkpoint and monitors). Only steps change them: once per iteration is enough."""
        if self._synced_at == self.iteration:
            return
        self._synced_at = self.iteration
        fused = self.use_cuda or None
        for model, opt, model_name, opt_name in ((self.G, self.opt_g, "G", "opt_g"), (self.D, self.opt_d, "D", "opt_d")):
            weights = member_state_dicts(model, self.group_size)
            state = opt.state_dict()
            for index, m in enumerate(self.members):
                getattr(m.trainer, model_name).load_state_dict(weights[index])
                if state["state"]:
                    load_optimizer_state(getattr(m.trainer, opt_name),
                                         unstack_optimizer_state(state, self.group_size, index), fused=fused)

    def member_state(self, index: int) -> dict[str, Any]:
        """Member `index`'s checkpoint payload (call sync_members() first)."""
        m = self.members[index]
        payload = m.trainer.state()
        payload["rng"] = {**payload["rng"], ("cuda" if self.use_cuda else "torch"): m.noise.get_state()}
        return payload

    def save(self, paths: Sequence[str | Path]) -> list[Path]:
        """Write every member's ckpt.pt (paths in member order)."""
        if len(paths) != self.group_size:
            raise ValueError(f"{len(paths)} paths for {self.group_size} members")
        self.sync_members()
        return [save_checkpoint(path, self.member_state(i)) for i, path in enumerate(paths)]
