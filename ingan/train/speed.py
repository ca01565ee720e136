"""Training speed, measured one way: images x iterations per second of a preset on a device.

One function for every training-speed question (benchmarks/train_group_speed.py on CPU,
benchmarks/gpu_train_speed.py on a GPU): the single-image Trainer (`group=0`) or a
GroupTrainer of `group` images, eager or with CUDA graphs, timed at the preset's full
output-size range (past the curriculum and the extra inverse step's start, as most of a
run is) after warm-up steps, with the device synchronised around the timed steps.

With CUDA graphs a step either replays a captured graph, or captures one (or runs
eagerly); the report separates replayed steps (each timed with a sync) so the steady
rate is visible even while new output sizes are still being captured.

`count_ops` profiles one more step and reports, per image and step, the aten operators
the host dispatched (top-level ones: an operator's internal calls are not counted again)
and, on CUDA, the kernel launches the host issued and the kernels the GPU ran.
"""

from __future__ import annotations

import gc
import logging
import math
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np

from ingan.errors import first_line

log = logging.getLogger(__name__)

# Host-side CUDA runtime/driver calls that launch work (a graph replay is one launch).
_LAUNCH_PREFIXES = ("cudaLaunch", "cuLaunch", "cudaGraphLaunch", "cuGraphLaunch")


@dataclass(frozen=True)
class SpeedOptions:
    """What to time. `group=0` is the single-image Trainer; `group=n` a GroupTrainer of n."""

    preset: str = "quick"
    device: str = "cpu"
    group: int = 0
    cuda_graphs: bool = False
    cudnn: bool | None = None  # None: on for a group on CUDA (grouped convs need it), else the default (off)
    amp: bool = False
    crop_size: int | None = None
    size_step: int | None = None
    warmup_steps: int = 2
    steps: int = 10
    max_seconds: float | None = None  # stop the timed steps after this long (at least one step runs)
    count_ops: bool = False
    seed: int = 0

    def describe(self) -> str:
        kind = "single-image Trainer" if self.group == 0 else f"group of {self.group}"
        extras = [f"size step {self.size_step}" if self.size_step else "",
                  "CUDA graphs" if self.cuda_graphs else "eager", "bf16" if self.amp else ""]
        return f"{kind}, {self.preset} preset, {self.device}, " + ", ".join(e for e in extras if e)


@dataclass(frozen=True)
class SpeedReport:
    options: SpeedOptions
    images: int = 0
    start_iteration: int = 0
    crop_size: int = 0
    warmup_seconds: float = 0.0
    steps: int = 0
    seconds: float = 0.0
    it_per_s: float = 0.0  # group iterations (steps) per second
    images_it_per_s: float = 0.0  # images x iterations per second
    # This process's CPU time over the timed steps (all its threads), and images x iterations
    # per CPU second: on a CPU shared with other work it is steadier than the wall-clock rate.
    cpu_seconds: float = 0.0
    images_it_per_cpu_s: float = 0.0
    replay_steps: int | None = None  # CUDA graphs: timed steps that replayed a graph (no capture)...
    replay_it_per_s: float | None = None  # ...and their rate
    graph_stats: dict[str, Any] | None = None
    ops_per_image_step: float | None = None
    launches_per_image_step: float | None = None
    kernels_per_image_step: float | None = None
    peak_memory_gib: float | None = None
    losses_finite: bool | None = None
    error: str | None = None
    threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"] = asdict(self.options)
        return data


def environment() -> dict[str, Any]:
    """Where a measurement ran: Python, torch, CPU and, with CUDA, the GPU and its driver."""
    import platform
    import subprocess

    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda_available": torch.cuda.is_available(),
                           "cpu": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, sm=f"{props.major}.{props.minor}", gpu_mem_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   graph_generators=hasattr(torch.cuda.CUDAGraph, "register_generator_state"))
        try:
            env["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["nvidia_smi"] = None
    return env


def synthetic_images(count: int, crop_size: int, seed: int = 0) -> list[np.ndarray]:
    """Random RGB images a little larger than the crop (content does not change the speed);
    sizes differ per image, as in a real group."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(crop_size + 16 * (i % 3) + 32, crop_size + 16 * (i % 4) + 64, 3),
                         dtype=np.uint8) for i in range(count)]


def _build(options: SpeedOptions, images: Sequence[np.ndarray] | None) -> Any:
    from ingan.train.config import PRESETS, RunOptions
    from ingan.train.group import GroupTrainer
    from ingan.train.trainer import Trainer

    config = PRESETS[options.preset].with_overrides(crop_size=options.crop_size, size_step=options.size_step,
                                                    seed=options.seed)
    count = max(options.group, 1)
    pixels = list(images) if images is not None else synthetic_images(count, config.crop_size, options.seed)
    if len(pixels) < count:
        pixels = [pixels[i % len(pixels)] for i in range(count)]
    on_cuda = options.device.startswith("cuda")
    cudnn = options.cudnn if options.cudnn is not None else (on_cuda and options.group > 0)
    run = RunOptions(device=options.device, amp=options.amp, cudnn=cudnn, cuda_graphs=options.cuda_graphs,
                     quiet=True, colour_calibration=False)
    if options.group == 0:
        trainer = Trainer(pixels[0], config, run)
        holders = [trainer]
    else:
        trainer = GroupTrainer.from_images(pixels[:count], config, run)
        holders = [m.trainer for m in trainer.members]
    start = max(config.curriculum_iters, config.inverse_start) + 1
    for holder in holders:
        holder.iteration = start
    return trainer


def _synchronize(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _count_ops(trainer: Any) -> tuple[float, float | None, float | None]:
    """(top-level aten ops, host launches, device kernels) of one step, per image."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        trainer.step()
        _synchronize(trainer.device)
    ops = launches = kernels = 0
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels += 1
            continue
        if event.name.startswith(_LAUNCH_PREFIXES):
            launches += 1
        if event.name.startswith("aten::"):
            parent = event.cpu_parent
            while parent is not None and not parent.name.startswith("aten::"):
                parent = parent.cpu_parent
            ops += parent is None
    n = trainer.group_size
    cuda = trainer.device.type == "cuda"
    return ops / n, (launches / n if cuda else None), (kernels / n if cuda else None)


def measure_training_speed(options: SpeedOptions, images: Sequence[np.ndarray] | None = None) -> SpeedReport:
    """Time `options.steps` training steps (see the module docstring). A failure (out of
    memory, a capture error...) is returned in `error`, never raised."""
    import torch

    report = SpeedReport(options=options, threads=torch.get_num_threads())
    trainer = None
    try:
        trainer = _build(options, images)
        images_per_step = max(options.group, 1)
        report = replace(report, images=images_per_step, start_iteration=trainer.iteration,
                         crop_size=trainer.config.crop_size)
        started = time.perf_counter()
        for _ in range(options.warmup_steps):
            trainer.step()
        _synchronize(trainer.device)
        report = replace(report, warmup_seconds=time.perf_counter() - started)
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.device)

        graphs = options.cuda_graphs
        replay_steps, replay_seconds = 0, 0.0
        started, cpu_started = time.perf_counter(), time.process_time()
        done = 0
        while done < options.steps:
            before = dict(trainer.graph_stats) if graphs else {}
            step_started = time.perf_counter()
            trainer.step()
            if graphs:  # classify the step: a sync per step, so its time is its own
                _synchronize(trainer.device)
                after = trainer.graph_stats
                # A capture replays its new graph too: only steps that captured nothing count.
                if after["replays"] > before["replays"] and after["captures"] == before["captures"]:
                    replay_steps += 1
                    replay_seconds += time.perf_counter() - step_started
            done += 1
            if options.max_seconds is not None and time.perf_counter() - started >= options.max_seconds:
                break
        losses = trainer.losses()  # syncs
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        values = [v for member in (losses if isinstance(losses, list) else [losses]) for v in vars(member).values()]
        rate = done / seconds
        report = replace(
            report, steps=done, seconds=seconds, it_per_s=rate, images_it_per_s=rate * images_per_step,
            cpu_seconds=cpu_seconds, images_it_per_cpu_s=done * images_per_step / cpu_seconds if cpu_seconds > 0 else 0.0,
            losses_finite=all(math.isfinite(v) for v in values),
            replay_steps=replay_steps if graphs else None,
            replay_it_per_s=(replay_steps / replay_seconds if replay_seconds > 0 else None) if graphs else None,
            graph_stats=trainer.graph_stats if graphs else None,
        )
        if trainer.device.type == "cuda":
            report = replace(report, peak_memory_gib=torch.cuda.max_memory_allocated(trainer.device) / 2**30)
        if options.count_ops:
            ops, launches, kernels = _count_ops(trainer)
            report = replace(report, ops_per_image_step=ops, launches_per_image_step=launches,
                             kernels_per_image_step=kernels)
    except Exception as exc:  # noqa: BLE001 - one failing variant must not end a benchmark
        log.warning("%s failed: %s", options.describe(), first_line(exc, None))
        report = replace(report, error=f"{type(exc).__name__}: {first_line(exc, 400)}")
    finally:
        # The trainer and its CUDA-graph runner refer to each other: collect the cycle, or
        # the graphs' private memory pool outlives the measurement.
        del trainer
        gc.collect()
        if options.device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return report


def images_rate_gain(report: SpeedReport, baseline: SpeedReport) -> float | None:
    """How many times the baseline's images x iterations per second `report` reaches."""
    if report.error or baseline.error or not baseline.images_it_per_s:
        return None
    gain = report.images_it_per_s / baseline.images_it_per_s
    return gain if math.isfinite(gain) else None
