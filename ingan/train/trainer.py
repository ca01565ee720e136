"""The InGAN training loop: one readable step, explicit schedules, exact resume."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

import ingan
from ingan.errors import CheckpointError, ConfigError, DeviceError
from ingan.model.checkpoint import Checkpoint, save_checkpoint
from ingan.model.discriminator import MultiScaleDiscriminator, scale_weights
from ingan.model.generator import Generator
from ingan.model.warp import top_shift_homography
from ingan.train.config import RunOptions, TrainConfig
from ingan.train.schedule import lr_factor, sample_output_size, sample_shifts, scale_range

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; an explicit cuda request must be satisfiable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"--device {name} requested but CUDA is not available (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}); use --device cpu"
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
        return device
    raise DeviceError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N")


def image_to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> [1, 3, H, W] float in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(pixels)).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().div(127.5).sub(1.0)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] in [-1, 1] -> (H, W, 3) uint8 (rounded like the original)."""
    x = t.detach().float()[0].clamp(-1, 1).add(1).mul(127.5).round().byte()
    return x.permute(1, 2, 0).cpu().numpy()


@dataclass
class StepLosses:
    g_gan: float
    g_rec: float
    g_inverse: float
    d_real: float
    d_fake: float


class Trainer:
    """Holds G, D, their optimisers and all RNG streams; `step()` is one InGAN iteration."""

    def __init__(
        self,
        image: np.ndarray,
        config: TrainConfig,
        options: RunOptions | None = None,
        image_name: str = "image",
    ) -> None:
        self.config = config
        self.options = options or RunOptions()
        self.device = resolve_device(self.options.device)
        self.use_cuda = self.device.type == "cuda"
        self.amp = self.options.amp and self.use_cuda
        self.channels_last = self.options.channels_last and self.use_cuda
        self.image_name = image_name
        self.image_pixels = np.ascontiguousarray(image)
        h, w = self.image_pixels.shape[:2]
        if min(h, w) < config.crop_size:
            smallest = 2 * config.generator.min_size  # the smallest crop the architecture trains on
            fitting = min(h, w) // config.generator.size_multiple * config.generator.size_multiple
            if fitting < smallest:
                raise ConfigError(
                    f"image is {w}x{h}: too small to train on; InGAN needs at least {smallest} px on the "
                    f"shorter side (use a larger image)"
                )
            raise ConfigError(
                f"image is {w}x{h}, smaller than the {config.crop_size} px training crop; "
                f"pass --crop-size {fitting} or a larger image"
            )

        torch.manual_seed(config.seed)
        self.data_rng = torch.Generator().manual_seed(config.seed + 1)
        self.G = Generator(config.generator).to(self.device)
        self.D = MultiScaleDiscriminator(config.crop_size, config.discriminator).to(self.device)
        if self.channels_last:
            self.G = self.G.to(memory_format=torch.channels_last)
            self.D = self.D.to(memory_format=torch.channels_last)
        betas = (config.beta1, config.beta2)
        # fused: one kernel per optimiser step on CUDA (the step is launch-bound, see docs/training.md).
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.g_lr, betas=betas, fused=self.use_cuda or None)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.d_lr, betas=betas, fused=self.use_cuda or None)
        self.image = self._to_device_image(self.image_pixels)
        self.iteration = 0
        self.wall_time = 0.0  # seconds spent in step() over all runs of this checkpoint
        self.last_losses: StepLosses | None = None

    # ------------------------------------------------------------------ helpers
    def _to_device_image(self, pixels: np.ndarray) -> torch.Tensor:
        t = image_to_tensor(pixels, self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    def _autocast(self) -> contextlib.ExitStack:
        """bf16 autocast when enabled, and cuDNN on/off as the run options say (CUDA)."""
        stack = contextlib.ExitStack()
        if self.use_cuda:
            stack.enter_context(torch.backends.cudnn.flags(enabled=self.options.cudnn))
        if self.amp:
            stack.enter_context(torch.autocast(device_type=self.device.type, dtype=torch.bfloat16))
        return stack

    def _noise_like(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.rand_like(x) - 0.5) * (2.0 * self.config.noise)

    def _random_crop(self) -> torch.Tensor:
        _, _, h, w = self.image.shape
        c = self.config.crop_size
        top = int(torch.randint(0, h - c + 1, (1,), generator=self.data_rng))
        left = int(torch.randint(0, w - c + 1, (1,), generator=self.data_rng))
        return self.image[:, :, top : top + c, left : left + c]

    def _homographies(self, shifts: tuple[float, float] | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if shifts is None:
            return None, None
        h = top_shift_homography(*shifts)
        fwd = torch.tensor(h, dtype=torch.float32, device=self.device).unsqueeze(0)
        inv = torch.tensor(np.linalg.inv(h), dtype=torch.float32, device=self.device).unsqueeze(0)
        return fwd, inv

    def _set_lr(self) -> None:
        factor = lr_factor(self.iteration, self.config)
        for group in self.opt_g.param_groups:
            group["lr"] = self.config.g_lr * factor
        for group in self.opt_d.param_groups:
            group["lr"] = self.config.d_lr * factor

    # --------------------------------------------------------------------- step
    def step(self) -> StepLosses:
        """One iteration: a G step, the extra inverse step (late), then a D step."""
        started = time.perf_counter()
        cfg = self.config
        it = self.iteration
        self._set_lr()
        real = self._random_crop()
        crop_hw = (real.shape[2], real.shape[3])
        out_hw = sample_output_size(it, crop_hw, cfg, self.data_rng)
        fwd_h, inv_h = self._homographies(sample_shifts(it, cfg, self.data_rng))

        # --- generator: fool D, and map back to the input (round trip).
        self.D.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        # cached(): each spectral-normalised weight is computed (one power iteration) once
        # per step instead of once per forward call; on a GPU these tiny kernels dominate.
        with self._autocast(), parametrize.cached():
            fake = self.G(real + self._noise_like(real), out_hw, fwd_h)
            weights = scale_weights(it, min(out_hw), cfg.discriminator, cfg.scale_weights_even_at)
            d_on_fake = self.D(fake, weights).float()
            rec = self.G(fake, crop_hw, inv_h).float()
        g_gan = F.mse_loss(d_on_fake, torch.ones_like(d_on_fake))
        g_rec = F.l1_loss(rec, real.float())
        (g_gan + cfg.rec_weight * g_rec).backward()
        self.opt_g.step()

        g_inverse = torch.zeros((), device=self.device)
        if it > cfg.inverse_start:
            # Trains only the inverse direction: the forward output is detached.
            self.opt_g.zero_grad(set_to_none=True)
            with self._autocast():
                inverse = self.G(fake.detach(), crop_hw, inv_h).float()
            g_inverse = F.l1_loss(inverse, real.float()) * cfg.inverse_weight
            g_inverse.backward()
            self.opt_g.step()

        # --- discriminator: real crops -> 1, generated -> 0, same scale weights.
        self.D.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast(), parametrize.cached():
            d_real = self.D(real + self._noise_like(real), weights).float()
            fake_in = fake.detach()
            d_fake = self.D(fake_in + self._noise_like(fake_in), weights).float()
        d_loss_real = F.mse_loss(d_real, torch.ones_like(d_real))
        d_loss_fake = F.mse_loss(d_fake, torch.zeros_like(d_fake))
        (0.5 * (d_loss_real + d_loss_fake)).backward()
        self.opt_d.step()

        self.iteration += 1
        self._pending = (g_gan.detach(), g_rec.detach(), g_inverse.detach(), d_loss_real.detach(), d_loss_fake.detach())
        self.wall_time += time.perf_counter() - started
        return self._pending  # type: ignore[return-value]

    def losses(self) -> StepLosses:
        """Losses of the last step as floats (a device sync on CUDA: call sparingly)."""
        values = [float(v) for v in self._pending]
        self.last_losses = StepLosses(*values)
        return self.last_losses

    # ------------------------------------------------------------- inference
    @torch.no_grad()
    def retarget(self, scale_y: float, scale_x: float) -> np.ndarray:
        """G on the whole training image (as the original's test), in eval mode."""
        from ingan.model.sizes import scaled_size

        h, w = self.image.shape[2:]
        size = scaled_size(h, w, scale_y, scale_x)
        size = (max(size[0], self.config.generator.min_size), max(size[1], self.config.generator.min_size))
        was_training = self.G.training
        self.G.eval()
        try:
            with self._autocast():
                out = self.G(self.image, size)
        finally:
            self.G.train(was_training)
        return tensor_to_image(out)

    # ------------------------------------------------------------ checkpoint
    def trained_scale_range(self) -> tuple[float, float]:
        return scale_range(max(self.iteration - 1, 0), self.config)

    def state(self) -> dict[str, Any]:
        rng: dict[str, Any] = {"torch": torch.get_rng_state(), "data": self.data_rng.get_state()}
        if self.use_cuda:
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        lo, hi = self.trained_scale_range()
        payload: dict[str, Any] = {
            "ingan_version": ingan.__version__,
            "generator": _cpu_state(self.G.state_dict()),
            "generator_config": self.config.generator.to_dict(),
            "train_config": self.config.to_dict(),
            "run_options": asdict(self.options),
            "image": torch.from_numpy(self.image_pixels.copy()),
            "image_name": self.image_name,
            "iteration": self.iteration,
            "scale_range": [lo, hi],
            "wall_time": float(self.wall_time),
            "discriminator": _cpu_state(self.D.state_dict()),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "rng": rng,
        }
        if self.last_losses is not None:
            payload["losses"] = asdict(self.last_losses)
        return payload

    def init_generator_from(self, ckpt: Checkpoint) -> None:
        """Warm start: copy another checkpoint's generator weights (same architecture)."""
        if ckpt.generator_config != self.config.generator:
            raise ConfigError(
                f"'{ckpt.path}' has generator {ckpt.generator_config}, this run needs {self.config.generator}; "
                "pass matching --preset/--base-channels"
            )
        try:
            self.G.load_state_dict(ckpt.payload["generator"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"'{ckpt.path}': generator weights do not fit ({exc})") from None

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.state())

    @classmethod
    def from_checkpoint(
        cls, ckpt: Checkpoint, options: RunOptions | None = None, iters: int | None = None
    ) -> "Trainer":
        """Rebuild a trainer exactly as it was when `ckpt` was saved."""
        if not ckpt.has_training_state:
            raise CheckpointError(
                f"cannot resume from '{ckpt.path}': it holds only the generator (a serving "
                "checkpoint); resume from the full ckpt.pt written during training"
            )
        config = TrainConfig.from_dict(ckpt.payload["train_config"])
        if iters is not None:
            config = config.with_overrides(iters=iters)
        payload = ckpt.payload
        trainer = cls(ckpt.image, config, options, image_name=str(payload["image_name"]))
        try:
            trainer.G.load_state_dict(payload["generator"])
            trainer.D.load_state_dict(payload["discriminator"])
            trainer.opt_g.load_state_dict(payload["optimizer_g"])
            trainer.opt_d.load_state_dict(payload["optimizer_d"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"'{ckpt.path}': training state does not match its config ({exc})") from None
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        trainer.data_rng.set_state(rng["data"])
        if trainer.use_cuda and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], trainer.device)
        trainer.iteration = ckpt.iteration
        trainer.wall_time = float(payload["wall_time"])
        if "losses" in payload:
            trainer.last_losses = StepLosses(**payload["losses"])
        return trainer


def _cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def run_loop(
    trainer: Trainer,
    on_step: Callable[[Trainer], None],
    should_stop: Callable[[], bool],
) -> None:
    """Step until `iters` or until `should_stop()` (checked after every step)."""
    while trainer.iteration < trainer.config.iters:
        trainer.step()
        on_step(trainer)
        if should_stop():
            break
