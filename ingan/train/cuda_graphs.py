"""CUDA-graph training steps: capture each step shape once, then replay it.

Why: a batch-1 InGAN step launches ~7,700 small kernels (G three times, nine
discriminator scales, spectral norm everywhere); on an H100 the host needs ~250 ms to
launch what the GPU runs in ~45 ms (benchmarks/results/2026-11-26-h100-training). A CUDA
graph replays a whole step with one launch.

How: a graph is tied to tensor addresses and shapes, so
  * the step reads its inputs from static buffers (crop, homographies, D's scale weights)
    that are refilled before every replay, and the learning rate lives in device tensors
    of capturable Adam optimisers;
  * gradients are zeroed in place and spectral norm updates u/v in place, so every
    tensor a step writes keeps its address;
  * one graph is captured per (output size, extra inverse step on/off, homography on/off).
    The number of distinct output sizes is what makes this pay off: with the original
    rounding (multiples of 8) a 256 crop has ~4,600 size pairs, so `--size-step 32`
    (~320 pairs) is the intended companion; graphs share one memory pool (steps never
    overlap) and new shapes beyond `max_graphs` simply run eagerly.

The maths is TrainingStep.compute_step (ingan/train/step.py), unchanged: a graph step
equals an eager step up to float rounding and the CUDA random stream of the input noise
(so a resumed run is not bit-identical to an uninterrupted one, unlike eager mode).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ingan.errors import DeviceError, first_line
from ingan.model.layers import set_in_place_power_iteration

if TYPE_CHECKING:
    from ingan.train.step import StepPlan, TrainingStep

log = logging.getLogger(__name__)

GraphKey = tuple[tuple[int, int], bool, bool]  # (output size, inverse step, homography)


@dataclass
class GraphStats:
    captures: int = 0
    replays: int = 0
    eager_steps: int = 0
    capture_seconds: float = 0.0
    disabled_reason: str | None = None


class StaticStepInputs:
    """Fixed-address input buffers for graph-safe steps, and the step on them.

    Device-agnostic (the same code runs eagerly on CPU in the tests); CudaGraphSteps adds
    the capture and replay. Works for one image and for a group (`trainer.group_size`
    channel-stacked images, one homography each).
    """

    def __init__(self, trainer: "TrainingStep") -> None:
        self.trainer = trainer
        device = trainer.device
        c, n = trainer.config.crop_size, trainer.group_size
        real = torch.zeros(1, 3 * n, c, c, device=device)
        self.real = real.contiguous(memory_format=torch.channels_last) if trainer.channels_last else real
        self.fwd_h = torch.eye(3, device=device).repeat(n, 1, 1)
        self.inv_h = torch.eye(3, device=device).repeat(n, 1, 1)
        self.weights = torch.zeros(trainer.config.discriminator.max_scales, device=device)
        set_in_place_power_iteration(trainer.G, True)
        set_in_place_power_iteration(trainer.D, True)

    def fill(self, plan: "StepPlan") -> None:
        """Copy this step's draws into the buffers."""
        self.real.copy_(self.trainer.real_input(plan))
        _upload(self.weights[: len(plan.weights)], torch.tensor(plan.weights, dtype=torch.float32))
        arrays = self.trainer.homography_arrays(plan)
        if arrays is not None:
            _upload(self.fwd_h, torch.from_numpy(arrays[0]))
            _upload(self.inv_h, torch.from_numpy(arrays[1]))

    def compute(self, plan: "StepPlan") -> torch.Tensor:
        """compute_step on the buffers (graph-safe); the five losses stacked."""
        has_h = plan.shifts is not None
        return torch.stack(self.trainer.compute_step(
            self.real, plan, self.weights[: len(plan.weights)],
            self.fwd_h if has_h else None, self.inv_h if has_h else None,
        ))


def _upload(target: torch.Tensor, host: torch.Tensor) -> None:
    """Host values into a device buffer without a host-GPU sync on CUDA.

    A blocking copy_ from pageable memory waits for the stream to drain, i.e. for the
    previous step, so the host could no longer prepare a step while the GPU runs one.
    Pinned + non_blocking is safe here: torch's pinned-memory cache keeps the block until
    the copy has run, however soon `host` is dropped.
    """
    if target.device.type == "cuda":
        target.copy_(host.pin_memory(), non_blocking=True)
    else:
        target.copy_(host)


class CudaGraphSteps:
    """Runs training steps through per-shape CUDA graphs (see the module docstring)."""

    def __init__(self, trainer: "TrainingStep", warmup_steps: int = 3, max_graphs: int = 512) -> None:
        if trainer.device.type != "cuda":
            raise DeviceError(
                f"CUDA graphs need a CUDA device, this run is on {trainer.device}; drop --cuda-graphs"
            )
        self.trainer = trainer
        self.warmup_steps = warmup_steps
        self.max_graphs = max_graphs
        self.inputs = StaticStepInputs(trainer)
        self.stream = torch.cuda.Stream(device=trainer.device)
        self.pool = torch.cuda.graph_pool_handle()
        self.graphs: dict[GraphKey, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self._stats = GraphStats()

    # ---------------------------------------------------------------- public
    def stats(self) -> dict[str, Any]:
        s = self._stats
        return {"captures": s.captures, "replays": s.replays, "eager_steps": s.eager_steps,
                "graphs": len(self.graphs), "capture_seconds": round(s.capture_seconds, 3),
                "disabled_reason": s.disabled_reason}

    def run(self, plan: "StepPlan") -> tuple[torch.Tensor, ...]:
        """One training step for `plan`: replay its graph, capture it, or run eagerly."""
        self._make_optimizers_capturable()
        current = torch.cuda.current_stream(self.trainer.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            self.inputs.fill(plan)
            key: GraphKey = (plan.out_hw, plan.inverse, plan.shifts is not None)
            entry = self.graphs.get(key)
            if entry is None and self._may_capture():
                entry = self._capture(key, plan)
            if entry is not None:
                entry[0].replay()
                outputs = entry[1]
                self._stats.replays += 1
            else:
                outputs = self.inputs.compute(plan)
                self._stats.eager_steps += 1
        current.wait_stream(self.stream)
        losses = outputs.clone()  # on the caller's stream: the next replay overwrites `outputs`
        return tuple(losses.unbind())

    # --------------------------------------------------------------- helpers
    def _may_capture(self) -> bool:
        s = self._stats
        return s.disabled_reason is None and s.eager_steps >= self.warmup_steps and len(self.graphs) < self.max_graphs

    def _make_optimizers_capturable(self) -> None:
        """Device-tensor learning rates and capturable Adam (again after a state load)."""
        for opt in (self.trainer.opt_g, self.trainer.opt_d):
            for group in opt.param_groups:
                if not isinstance(group["lr"], torch.Tensor):
                    if self.graphs:
                        # A captured graph reads the old lr tensor; it would silently stop
                        # following the schedule.
                        raise RuntimeError("optimizer state was replaced after CUDA graphs were captured")
                    group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=self.trainer.device)
                group["capturable"] = True

    def _capture(self, key: GraphKey, plan: "StepPlan") -> tuple[torch.cuda.CUDAGraph, torch.Tensor] | None:
        started = time.perf_counter()
        graph = torch.cuda.CUDAGraph()
        try:
            for generator in self.trainer.graph_generators():  # per-image noise streams (a group)
                if not hasattr(graph, "register_generator_state"):
                    raise RuntimeError(f"torch {torch.__version__} cannot capture draws from non-default "
                                       "CUDA generators (CUDAGraph.register_generator_state is missing)")
                graph.register_generator_state(generator)
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream):
                outputs = self.inputs.compute(plan)
        except RuntimeError as exc:  # unsupported op, out of memory, driver limits...
            reason = f"capture of output size {key[0][1]}x{key[0][0]} failed: {first_line(exc, None)}"
            log.warning("CUDA graphs off for the rest of this run (%s); continuing eagerly", reason)
            self._stats.disabled_reason = reason
            return None
        self._stats.captures += 1
        self._stats.capture_seconds += time.perf_counter() - started
        self.graphs[key] = (graph, outputs)
        if len(self.graphs) == self.max_graphs:
            log.info("captured %d CUDA graphs (the limit); new step shapes now run eagerly", self.max_graphs)
        return self.graphs[key]
