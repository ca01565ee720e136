"""Training configuration and the two presets.

`paper` reproduces the original InGAN schedule (75k iterations, hours on one GPU).
`quick` is a smoke test that runs the whole pipeline in about 4-5 minutes on 2 CPU cores;
measured here it does NOT beat a bicubic stretch (docs/training.md), it only shows
that everything works.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

from ingan.errors import ConfigError
from ingan.model.config import DiscriminatorConfig, GeneratorConfig


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines the training maths. Stored in every checkpoint."""

    preset: str = "paper"
    iters: int = 75_000
    crop_size: int = 256
    g_lr: float = 5e-5
    d_lr: float = 5e-5
    beta1: float = 0.5
    beta2: float = 0.999
    # Learning rate is constant until here, then falls linearly to 0 at `iters`.
    lr_decay_start: int = 20_000
    # Output size = crop * U(min, max) per axis; the range widens from [1, 1] over
    # `curriculum_iters` iterations.
    min_scale: float = 0.15
    max_scale: float = 2.25
    curriculum_iters: int = 10_000
    # Homography augmentation: top-corner shifts drawn from U(-m, m) (0 = off, as in the paper).
    max_transform: float = 0.0
    rec_weight: float = 0.1
    # After this iteration, one extra G step on the inverse reconstruction alone.
    inverse_start: int = 10_000
    inverse_weight: float = 1.0
    # Uniform noise of +-noise on G's input and on both D inputs (1/255: de-quantise).
    noise: float = 1.0 / 255.0
    # D's per-scale weights are even at this iteration (coarse-heavy before, fine-heavy after).
    scale_weights_even_at: int = 25_000
    # D's scale weights stop moving at this iteration (0: never). `--resume --iters` sets it
    # to the run's original end, so an extended run keeps the schedule's final weighting
    # (the paper ends at w_k ~ 1.4**(-2k)) instead of extrapolating it towards the finest
    # scale alone, where a stretch is invisible.
    scale_weights_hold_at: int = 0
    # Sampled output sides are snapped to the nearest multiple of this (0: no snapping, the
    # original's rounding up to the architecture multiple only). Coarser steps give fewer
    # distinct output shapes, which is what lets CUDA graphs be reused (docs/training.md).
    size_step: int = 0
    seed: int = 0
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.iters < 1:
            problems.append("iters must be >= 1")
        if self.crop_size < 2 * self.generator.min_size or self.crop_size % self.generator.size_multiple:
            problems.append(
                f"crop size (--crop-size) must be a multiple of {self.generator.size_multiple} and >= "
                f"{2 * self.generator.min_size}"
            )
        if not 0 < self.min_scale <= 1 <= self.max_scale:
            problems.append("scales must satisfy 0 < min_scale <= 1 <= max_scale")
        if not 0 <= self.max_transform < 1:
            problems.append("max_transform must be in [0, 1)")
        if not (0 < self.g_lr < float("inf") and 0 < self.d_lr < float("inf")):  # also refuses nan
            problems.append("learning rates (--lr) must be finite and > 0")
        if self.size_step < 0 or self.size_step % self.generator.size_multiple:
            problems.append(f"size step (--size-step) must be 0 or a multiple of {self.generator.size_multiple}")
        elif self.size_step > self.crop_size:
            problems.append(f"size step (--size-step) must be at most the crop size ({self.crop_size}); a larger "
                            "step would snap every output above the trained scale range")
        if problems:
            raise ConfigError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["generator"] = self.generator.to_dict()
        data["discriminator"] = self.discriminator.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrainConfig":
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"training config has unknown fields {sorted(unknown)}; it was written by a newer ingan")
        data["generator"] = GeneratorConfig.from_dict(data.get("generator", {}))
        data["discriminator"] = DiscriminatorConfig.from_dict(data.get("discriminator", {}))
        return cls(**data)

    def rescaled(self, iters: int) -> "TrainConfig":
        """The same schedule compressed or stretched to `iters` iterations.

        Every milestone (curriculum end, extra inverse step start, learning-rate decay
        start, even discriminator scale weights) keeps its fraction of the run, so a
        shorter run is a miniature of the full one rather than its first part.
        """
        ratio = iters / self.iters

        def scale(milestone: int) -> int:
            return max(0, int(round(milestone * ratio)))

        return replace(
            self,
            iters=iters,
            curriculum_iters=scale(self.curriculum_iters),
            inverse_start=scale(self.inverse_start),
            lr_decay_start=scale(self.lr_decay_start),
            scale_weights_even_at=max(1, scale(self.scale_weights_even_at)),
            scale_weights_hold_at=scale(self.scale_weights_hold_at),
        )

    def extended(self, iters: int) -> "TrainConfig":
        """This run continued to `iters` (`--resume --iters`): the lr decay now ends there;
        every other milestone stays and the D scale weights hold at the original end."""
        hold = self.scale_weights_hold_at or (self.iters if iters > self.iters else 0)
        return replace(self, iters=iters, scale_weights_hold_at=hold)

    def holding_even_scale_weights(self) -> "TrainConfig":
        """D's scale weights stop moving once they are even (`--even-scale-weights`).

        The schedule's fine-heavy end suits the paper's 75k iterations; for a compressed
        or extended run, even weights keep the coarse scales (where a stretched object
        looks wrong) in play (benchmarks/results/2026-11-27-cpu-even-scale-weights)."""
        return replace(self, scale_weights_hold_at=self.scale_weights_even_at)

    def scale_weight_iteration(self, iteration: int) -> int:
        """The iteration whose D scale weights `iteration` uses."""
        hold = self.scale_weights_hold_at
        return min(iteration, hold) if hold else iteration

    def with_overrides(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields replaced (None values are ignored)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        gen = changes.pop("base_channels", None)
        config = replace(self, **changes)
        if gen is not None:
            config = replace(config, generator=replace(config.generator, base_channels=gen))
        return config


PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    # Measured on 2 CPU cores (docs/training.md): ~0.55 s/it, so ~5 min. rec_weight 1.0 was
    # the only change that came near bicubic at this budget; 0.1 cannot even reproduce
    # the input in 500 iterations.
    "quick": TrainConfig(
        preset="quick",
        iters=500,
        crop_size=96,
        g_lr=2e-4,
        d_lr=2e-4,
        lr_decay_start=500,
        curriculum_iters=200,
        rec_weight=1.0,
        inverse_start=500,
        scale_weights_even_at=250,
        generator=GeneratorConfig(base_channels=16),
        discriminator=DiscriminatorConfig(base_channels=64),
    ),
}


@dataclass(frozen=True)
class RunOptions:
    """How a run executes; may change between a run and its resume."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # CUDA speed switches. Defaults follow benchmarks/results/2026-11-26-h100-training:
    # batch-1 InGAN steps are bound by per-kernel host overhead, not GPU maths, so bf16
    # and channels-last were slower there, and cuDNN's per-shape set-up (a new output size
    # every iteration) cost more than its faster kernels saved (2.3 vs 4.05 it/s).
    amp: bool = False  # bf16 autocast
    channels_last: bool = False
    cudnn: bool = False
    # Replay each (output size, step kind) as a CUDA graph after its first capture: removes
    # the per-kernel host overhead that bounds a batch-1 step (ingan/train/cuda_graphs.py).
    cuda_graphs: bool = False
    save_every: int = 1000
    monitor_every: int = 1000
    time_budget: float | None = None  # seconds of wall clock for this invocation
    quiet: bool = False
    # Fit the per-channel output colour calibration into every saved checkpoint
    # (ingan/model/calibration.py); it never changes the training maths.
    colour_calibration: bool = True
