"""The InGAN training loop: one readable step, explicit schedules, exact resume."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import ingan
from ingan.errors import CheckpointError, ConfigError, DeviceError, first_line
from ingan.model.calibration import ColourCalibration
from ingan.model.checkpoint import Checkpoint, save_checkpoint
from ingan.model.device import torch_device
from ingan.model.discriminator import MultiScaleDiscriminator, scale_weights
from ingan.model.generator import Generator, fit_colour_calibration
from ingan.model.tensors import image_to_tensor, tensor_to_image
from ingan.train.config import RunOptions, TrainConfig
from ingan.train.schedule import sample_output_size, sample_shifts, scale_range
from ingan.train.step import StepLosses, StepPlan, TrainingStep, homography_pair

__all__ = ["StepLosses", "StepPlan", "Trainer", "homography_pair", "image_to_tensor", "run_loop", "tensor_to_image"]

log = logging.getLogger(__name__)


class Trainer(TrainingStep):
    """Holds G, D, their optimisers and all RNG streams; `step()` is one InGAN iteration
    (the maths: ingan/train/step.py)."""

    def __init__(
        self,
        image: np.ndarray,
        config: TrainConfig,
        options: RunOptions | None = None,
        image_name: str = "image",
    ) -> None:
        self.config = config
        self.options = options or RunOptions()
        self.device = torch_device(self.options.device)
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
        self._calibration: tuple[int, ColourCalibration | None] | None = None  # (iteration, fit)
        self._pending: tuple[torch.Tensor, ...] = ()
        self.lineage: list[dict[str, Any]] = []  # warm starts this generator came from
        self._graphs: Any = None  # CudaGraphSteps when options.cuda_graphs

        if self.options.cuda_graphs:
            from ingan.train.cuda_graphs import CudaGraphSteps

            self._graphs = CudaGraphSteps(self)

    @property
    def graph_stats(self) -> dict[str, Any] | None:
        """Captures, replays and eager steps so far when CUDA graphs are on."""
        return None if self._graphs is None else self._graphs.stats()

    # ------------------------------------------------------------------ helpers
    def _to_device_image(self, pixels: np.ndarray) -> torch.Tensor:
        t = image_to_tensor(pixels, self.device)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    def _crop_corner(self) -> tuple[int, int]:
        _, _, h, w = self.image.shape
        c = self.config.crop_size
        top = int(torch.randint(0, h - c + 1, (1,), generator=self.data_rng))
        left = int(torch.randint(0, w - c + 1, (1,), generator=self.data_rng))
        return top, left

    def crop(self, top: int, left: int) -> torch.Tensor:
        """A dense copy of the crop: the same layout as the CUDA-graph input buffer, so
        both paths run identical kernels (and CPU random draws; a strided view differs)."""
        c = self.config.crop_size
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return self.image[:, :, top : top + c, left : left + c].contiguous(memory_format=fmt)

    # --------------------------------------------------------------------- step
    def plan(self) -> StepPlan:
        """Everything random or scheduled about the next iteration, drawn on the host."""
        cfg = self.config
        it = self.iteration
        top, left = self._crop_corner()
        crop_hw = (cfg.crop_size, cfg.crop_size)
        out_hw = sample_output_size(it, crop_hw, cfg, self.data_rng)
        shifts = sample_shifts(it, cfg, self.data_rng)
        weights = tuple(scale_weights(cfg.scale_weight_iteration(it), min(out_hw), cfg.discriminator,
                                      cfg.scale_weights_even_at))
        return StepPlan(it, top, left, crop_hw, out_hw, shifts, weights, it > cfg.inverse_start)

    def real_input(self, plan: StepPlan) -> torch.Tensor:
        return self.crop(plan.top, plan.left)

    def homography_arrays(self, plan: StepPlan) -> tuple[np.ndarray, np.ndarray] | None:
        if plan.shifts is None:
            return None
        fwd, inv = homography_pair(plan.shifts)
        return fwd[None], inv[None]

    def _advance(self, seconds: float) -> None:
        self.iteration += 1
        self.wall_time += seconds

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
        # Monitors show what the checkpoint saved now would produce (calibration included).
        self.G.set_colour_calibration(self.colour_calibration())
        was_training = self.G.training
        self.G.eval()
        try:
            with self._autocast():
                out = self.G(self.image, size)
        finally:
            self.G.train(was_training)
            self.G.set_colour_calibration(None)
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
            "optimizer_g": _portable_optimizer_state(self.opt_g),
            "optimizer_d": _portable_optimizer_state(self.opt_d),
            "rng": rng,
        }
        if self.last_losses is not None:
            payload["losses"] = asdict(self.last_losses)
        if self.lineage:
            payload["lineage"] = list(self.lineage)
        calibration = self.colour_calibration()
        if calibration is not None:
            payload["colour_calibration"] = calibration.to_dict()
        return payload

    def colour_calibration(self) -> ColourCalibration | None:
        """G's output calibration as G is now (None when switched off, or when G's output is
        not finite: the checkpoint's weight check names that). Fitted from the raw generator
        once per iteration, shared by the save and every monitor tile; training never uses it."""
        if not self.options.colour_calibration:
            return None
        if self._calibration is None or self._calibration[0] != self.iteration:
            try:
                fitted: ColourCalibration | None = fit_colour_calibration(self.G, self.image, self.iteration)
            except ConfigError:
                fitted = None
            self._calibration = (self.iteration, fitted)
        return self._calibration[1]

    def init_generator_from(self, ckpt: Checkpoint) -> None:
        """Warm start: copy another checkpoint's generator weights (same architecture)."""
        if ckpt.generator_config != self.config.generator:
            raise ConfigError(
                f"'{ckpt.path}' has generator {ckpt.generator_config}, this run needs {self.config.generator}; "
                "pass matching --preset/--base-channels"
            )
        self._calibration = None  # G changes without a step
        try:
            self.G.load_state_dict(ckpt.payload["generator"])
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError(f"'{ckpt.path}': generator weights do not fit ({exc})") from None
        from ingan.metadata import sha256_of

        source = ckpt.payload.get("train_config", {})
        self.lineage = [*ckpt.payload.get("lineage", []), {
            "path": str(ckpt.path), "sha256": sha256_of(ckpt.path), "iteration": ckpt.iteration,
            "wall_time": float(ckpt.payload.get("wall_time", 0.0)), "preset": source.get("preset"),
            "crop_size": source.get("crop_size"), "iters": source.get("iters"),
        }]

    def save(self, path: str | Path) -> Path:
        return save_checkpoint(path, self.state())

    @classmethod
    def from_checkpoint(
        cls, ckpt: Checkpoint, options: RunOptions | None = None, iters: int | None = None,
        even_scale_weights: bool = False,
    ) -> "Trainer":
        """Rebuild a trainer exactly as it was when `ckpt` was saved (then extended to `iters`
        and/or holding even D scale weights, if asked)."""
        if not ckpt.has_training_state:
            raise CheckpointError(
                f"cannot resume from '{ckpt.path}': it holds only the generator (a serving "
                "checkpoint); resume from the full ckpt.pt written during training, or start a new "
                "run from this generator with IMAGE --init-from"
            )
        config = TrainConfig.from_dict(ckpt.payload["train_config"])
        if iters is not None:
            config = config.extended(iters)
        if even_scale_weights:
            config = config.holding_even_scale_weights()
        payload = ckpt.payload
        trainer = cls(ckpt.image, config, options, image_name=str(payload["image_name"]))
        try:
            trainer.G.load_state_dict(payload["generator"])
            trainer.D.load_state_dict(payload["discriminator"])
            load_optimizer_state(trainer.opt_g, payload["optimizer_g"], fused=trainer.use_cuda or None)
            load_optimizer_state(trainer.opt_d, payload["optimizer_d"], fused=trainer.use_cuda or None)
        except (RuntimeError, KeyError, ValueError) as exc:
            first = first_line(exc)
            raise CheckpointError(f"'{ckpt.path}': training state does not match its config ({first})") from None
        rng = payload["rng"]
        torch.set_rng_state(rng["torch"])
        trainer.data_rng.set_state(rng["data"])
        if trainer.use_cuda and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], trainer.device)
        trainer.iteration = ckpt.iteration
        trainer.wall_time = float(payload["wall_time"])
        if "losses" in payload:
            trainer.last_losses = StepLosses(**payload["losses"])
        trainer.lineage = list(payload.get("lineage", []))
        return trainer


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict[str, Any], fused: bool | None) -> None:
    """load_state_dict, keeping this run's device choices.

    torch restores the saved groups' `fused`/`capturable` flags and places Adam's step
    counters by them: a CPU-written state would run unfused on CUDA, and its CPU step
    counters would trip capturable Adam (CUDA graphs), which needs them on the GPU. CUDA
    runs are always fused, so the counters land on the GPU here, before graph mode needs them.
    """
    opt.load_state_dict(state)
    for group in opt.param_groups:
        group["fused"] = fused
    _steps_to_param_device(opt)


def _steps_to_param_device(opt: torch.optim.Optimizer) -> None:
    """Fused and capturable Adam keep each step counter on its parameter's device, as float32."""
    for group in opt.param_groups:
        if not (group.get("fused") or group.get("capturable")):
            continue
        for param in group["params"]:
            state = opt.state.get(param, {})
            step = state.get("step")
            if isinstance(step, torch.Tensor) and (step.device != param.device or step.dtype != torch.float32):
                state["step"] = step.to(device=param.device, dtype=torch.float32)


def _portable_optimizer_state(opt: torch.optim.Optimizer) -> dict[str, Any]:
    """state_dict with plain-float learning rates and capturable off, as an eager run
    writes it: a checkpoint from a CUDA-graph run then resumes anywhere (the graph mode
    switches both back on when it loads)."""
    state = opt.state_dict()
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if "capturable" in group:
            group["capturable"] = False
        groups.append(group)
    return {**state, "param_groups": groups}


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
