"""Run a GroupTrainer to its end: saves, monitors, progress, time budget and Ctrl-C per image.

The same contract as one image's `ingan-train` run (ingan/train/cli.py): every member
writes `<its folder>/ckpt.pt` every `save_every` iterations and at the end, and
`monitor_<iteration>.png` every `monitor_every`; Ctrl-C or SIGTERM stops after the
current step and saves every member (exit code 130/143), a second Ctrl-C aborts at
once; `time_budget` stops and saves the same way. Continue with
`GroupTrainer.from_checkpoints` on the members' checkpoints.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ingan.fsutil import ensure_output_dir
from ingan.train.config import RunOptions
from ingan.train.group import GroupTrainer
from ingan.train.step import StepLosses
from ingan.train.run_control import RunTimer, loss_sync_every, progress_bar
from ingan.train.trainer import run_loop

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "ckpt.pt"


@dataclass(frozen=True)
class GroupRunReport:
    """How a group run ended. `rate` is group iterations per second (every member advanced
    by that many): images x iterations per second is `rate * len(checkpoints)`."""

    status: str
    exit_code: int
    iteration: int
    iterations_done: int
    rate: float
    checkpoints: tuple[Path, ...]
    monitors: tuple[Path, ...]
    losses: tuple[StepLosses, ...]


def run_group(group: GroupTrainer, out_dirs: Sequence[str | Path], options: RunOptions | None = None,
              began: float | None = None,
              after_step: Callable[[GroupTrainer, bool], None] | None = None) -> GroupRunReport:
    """Train `group` until its config's `iters`, the time budget or a signal; member i
    writes into out_dirs[i] (created). The time budget counts from `began` (a
    time.monotonic() value; default: now) and includes the final saves and monitors.
    `after_step(group, saved)` runs after every step (saved: the checkpoints were just
    written), e.g. for a fleet's progress view."""
    from ingan.train.budget import finish_cost
    from ingan.train.monitor import write_monitor

    options = options or group.options
    if len(out_dirs) != group.group_size:
        raise ValueError(f"{len(out_dirs)} output folders for {group.group_size} images")
    folders = [ensure_output_dir(d) for d in out_dirs]
    paths = [folder / CHECKPOINT_NAME for folder in folders]
    cfg = group.config

    def write_monitors() -> list[Path]:
        group.sync_members()  # each member's own generator draws its monitor
        return [write_monitor(m.trainer, folder) for m, folder in zip(group.members, folders)]

    def probe_finish() -> float:
        group.sync_members()  # the probe saves and retargets each member as it is now
        return finish_cost([m.trainer for m in group.members])

    timer = RunTimer(options.time_budget, time.monotonic() if began is None else began, probe_finish)
    stop, clock = timer.stop, timer.clock
    start_iter = group.iteration
    sync_every = loss_sync_every(group.device)
    bar = progress_bar(cfg.iters, start_iter, options.quiet, desc=f"{group.group_size} images")

    def on_step(trained: GroupTrainer) -> None:
        bar.update(1)
        timer.step_done()
        it = trained.iteration
        if it % sync_every == 0 or it == cfg.iters:
            losses = trained.losses()
            n = len(losses)
            bar.set_postfix_str(
                f"mean G {sum(l.g_gan for l in losses) / n:.3f} rec {sum(l.g_rec for l in losses) / n:.3f} "
                f"D {sum(l.d_real for l in losses) / n:.3f}/{sum(l.d_fake for l in losses) / n:.3f}",
                refresh=False,
            )
        saved = it % options.save_every == 0 and it < cfg.iters
        with timer.between_steps(it % options.save_every == 0 and it % options.monitor_every == 0):
            if saved:
                trained.save(paths)
            if it % options.monitor_every == 0 and it < cfg.iters:
                write_monitors()
            if after_step is not None:
                after_step(trained, saved)

    try:
        with stop:
            run_loop(group, on_step, stop.should_stop)  # type: ignore[arg-type]
    finally:
        bar.close()

    losses = group.losses() if group.iteration > start_iter else [m.trainer.last_losses for m in group.members]
    saved = group.save(paths)
    monitors = write_monitors()
    done = group.iteration - start_iter
    report = GroupRunReport(
        status=stop.status, exit_code=stop.exit_code, iteration=group.iteration, iterations_done=done,
        rate=clock.rate(done), checkpoints=tuple(saved), monitors=tuple(monitors),
        losses=tuple(l for l in losses if l is not None),
    )
    log.info("%s: %d images at iteration %d/%d (%d this run, %.2f it/s, %.2f images x it/s)", report.status,
             group.group_size, report.iteration, cfg.iters, done, report.rate, report.rate * group.group_size)
    return report
