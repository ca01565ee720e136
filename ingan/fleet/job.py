"""One group of a fleet, trained where it runs (this process or a Ray worker): the unit of work.

`run_job` is idempotent, so a retried task (a killed worker, a lost node) or a re-run command
simply calls it again: an image whose `ckpt.pt` is finished is skipped, one with a partial
`ckpt.pt` resumes from it (losing at most one save interval), the others start new. Every
image's problem (unreadable, too small, a checkpoint of other settings) is its own failed
outcome; the group trains on without it. Members at different iterations (a task killed
between two members' saves) train as separate groups, one after the other.

Progress goes out as `Progress` events through `emit` (a callable; a Ray actor on a
cluster), never through a progress bar: the fleet command shows one view for all groups.
Heavy imports (torch, the trainer, the exporter) happen only inside `run_job`.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from ingan.errors import ConfigError, InganError, first_line
from ingan.fleet.inputs import FleetImage
from ingan.train.config import RunOptions, TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "ckpt.pt"
EXPORT_NAME = "model"  # --export writes <image folder>/model.onnx, the name ingan-serve's catalog expects
PROGRESS_EVERY_S = 1.0  # step events at most this often (saves are always reported)


@dataclass(frozen=True)
class FleetTraining:
    """How and where every group of one fleet trains (the command's and each task's)."""

    out_dir: Path
    config: TrainConfig
    options: RunOptions
    max_side: int = 1024
    export: bool = False
    deadline: float | None = None  # time.time() at which the fleet's --time-budget ends

    def folder(self, image: FleetImage) -> Path:
        return self.out_dir / image.stem


@dataclass(frozen=True)
class GroupJob:
    """What one task trains: up to G images of one fleet."""

    images: tuple[FleetImage, ...]
    training: FleetTraining

    def folder(self, image: FleetImage) -> Path:
        return self.training.folder(image)


@dataclass(frozen=True)
class Progress:
    """A group's news. kind: start (a run of these images begins at `iteration`), step, saved."""

    kind: str
    stems: tuple[str, ...]
    iteration: int
    total: int
    pid: int
    host: str


@dataclass(frozen=True)
class ImageOutcome:
    """How one image stands after a job (status as in ingan/fleet/manifest.py)."""

    stem: str
    status: str
    iteration: int = 0
    iters: int = 0
    losses: dict[str, float] | None = None
    train_seconds: float = 0.0
    error: str | None = None
    started_at: int | None = None  # None: not trained by this job
    size: str | None = None
    exported: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobResult:
    outcomes: tuple[ImageOutcome, ...]
    exit_code: int = 0  # 130 / 143 when Ctrl-C, SIGTERM or a Ray cancel stopped the group


Emit = Callable[[Progress], None]


def run_job(job: GroupJob, emit: Emit | None = None, stop_requested: Callable[[], bool] | None = None) -> JobResult:
    """Train `job`'s images to the end, the deadline or a signal (see the module docstring).
    `stop_requested()` is the command's stop (its Ctrl-C, its time budget): checked before the
    job and each group start, and after every step, where it acts as a Ctrl-C of the training
    (save after this step, exit code 130)."""
    emit = emit or (lambda event: None)
    began = time.monotonic()
    if stop_requested is not None and stop_requested():  # a queued task started after the stop
        return JobResult(tuple(_not_started(job, image) for image in job.images))
    options = replace(job.training.options, quiet=True)  # the fleet's view shows progress, not one bar per group
    if job.training.deadline is not None:
        left = job.training.deadline - time.time()
        if left <= 0:
            return JobResult(tuple(_not_started(job, image) for image in job.images))
        options = replace(options, time_budget=left)

    outcomes: dict[str, ImageOutcome] = {}
    waiting: dict[int, list[tuple[FleetImage, Any]]] = {}  # iteration -> (image, Member)
    for image in job.images:
        try:
            member = _member(job, image, options)
        except InganError as exc:
            outcomes[image.stem] = _failed(job, image, exc)
            continue
        if isinstance(member, ImageOutcome):
            outcomes[image.stem] = member
        else:
            waiting.setdefault(member.trainer.iteration, []).append((image, member))

    exit_code, stopped = 0, False
    for iteration in sorted(waiting, reverse=True):
        group = waiting[iteration]
        stopped = stopped or (stop_requested is not None and stop_requested())
        if stopped:  # a signal or the time budget: the rest keep their checkpoints (or were never started)
            for image, member in group:
                outcomes[image.stem] = _stopped(image, member.trainer, None)
            continue
        exit_code, trained = _train(job, group, options, began, emit, stop_requested)
        outcomes.update(trained)
        stopped = bool(exit_code) or any(o.status == "partial" for o in trained.values())

    if job.training.export:
        for image in job.images:
            if outcomes[image.stem].status == "finished":
                outcomes[image.stem] = _export(job, image, outcomes[image.stem])
    return JobResult(tuple(outcomes[image.stem] for image in job.images), exit_code)


def _member(job: GroupJob, image: FleetImage, options: RunOptions) -> Any:
    """The image's group member (new, or resumed from its checkpoint), or its outcome when
    it has nothing to train (already finished)."""
    from ingan.imageio import load_image
    from ingan.model.checkpoint import load_checkpoint
    from ingan.train.group import Member

    ckpt_path = job.folder(image) / CHECKPOINT_NAME
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path)
        _check_belongs(ckpt, job, image)
        if ckpt.iteration >= job.training.config.iters:
            return _finished_outcome(image, ckpt.payload, ckpt.iteration, job.training.config.iters)
        return Member.resumed(ckpt, options)
    loaded = load_image(image.path, max_side=job.training.max_side)
    for message in loaded.notices:
        log.info("'%s': %s", image.path.name, message)
    return Member.new(loaded.pixels, job.training.config, options, image.path.name)


def _check_belongs(ckpt: Any, job: GroupJob, image: FleetImage) -> None:
    """A checkpoint in the image's folder must be this fleet's run of this image."""
    config = ckpt.payload.get("train_config")
    if config != job.training.config.to_dict() or ckpt.payload.get("image_name") != image.path.name:
        raise ConfigError(
            f"'{ckpt.path}' is not this fleet's run of '{image.path.name}' (another image or other training "
            "settings); move it away, or train this fleet into another -o"
        )


def _train(job: GroupJob, group: Sequence[tuple[FleetImage, Any]], options: RunOptions, began: float,
           emit: Emit, stop_requested: Callable[[], bool] | None) -> tuple[int, dict[str, ImageOutcome]]:
    from ingan.train.group import GroupTrainer
    from ingan.train.group_run import run_group

    images = [image for image, _ in group]
    stems = tuple(image.stem for image in images)
    try:
        trainer = GroupTrainer([member for _, member in group], options)
    except InganError as exc:
        return 0, {image.stem: _failed(job, image, exc) for image in images}
    start = trainer.iteration
    pid, host = os.getpid(), socket.gethostname()

    def news(kind: str, iteration: int) -> None:
        emit(Progress(kind, stems, iteration, job.training.config.iters, pid, host))

    last, asked = [time.monotonic()], [False]

    def after_step(group_trainer: Any, saved: bool) -> None:
        now = time.monotonic()
        if saved or now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            news("saved" if saved else "step", group_trainer.iteration)
        if stop_requested is not None and not asked[0] and stop_requested():
            asked[0] = True
            # The training's own Ctrl-C (run_group's handler): it saves after this step and stops.
            # Called at the Python level, not as a process signal: Ray workers run with SIGINT
            # blocked (seen here: the signal stayed pending and training went on).
            _thread.interrupt_main(signal.SIGINT)

    news("start", start)
    try:
        report = run_group(trainer, [job.folder(image) for image in images], options, began=began,
                           after_step=after_step)
    except InganError as exc:  # e.g. a full disk at a save: the last good checkpoints stay
        return 0, {image.stem: _failed(job, image, exc) for image in images}
    outcomes = {image.stem: _stopped(image, member.trainer, start) for image, member in group}
    return report.exit_code, outcomes


def _stopped(image: FleetImage, trainer: Any, started_at: int | None) -> ImageOutcome:
    """Where a member's trainer stands now (its checkpoint holds the same; none at iteration 0)."""
    total = trainer.config.iters
    status = "finished" if trainer.iteration >= total else "partial" if trainer.iteration else "pending"
    losses = asdict(trainer.last_losses) if trainer.last_losses is not None else None
    h, w = trainer.image_pixels.shape[:2]
    return ImageOutcome(image.stem, status, trainer.iteration, total, losses, float(trainer.wall_time),
                        started_at=started_at, size=f"{w}x{h}")


def _finished_outcome(image: FleetImage, payload: dict[str, Any], iteration: int, iters: int) -> ImageOutcome:
    h, w = payload["image"].shape[:2]
    return ImageOutcome(image.stem, "finished", iteration, iters, payload.get("losses"),
                        float(payload.get("wall_time", 0.0)), size=f"{w}x{h}")


def _failed(job: GroupJob, image: FleetImage, exc: BaseException) -> ImageOutcome:
    return ImageOutcome(image.stem, "failed", iters=job.training.config.iters, error=first_line(exc))


def _not_started(job: GroupJob, image: FleetImage) -> ImageOutcome:
    """An image the time budget left no time for: partial if it has a checkpoint, else pending."""
    has_checkpoint = (job.folder(image) / CHECKPOINT_NAME).exists()
    return ImageOutcome(image.stem, "partial" if has_checkpoint else "pending", iters=job.training.config.iters)


def _export(job: GroupJob, image: FleetImage, outcome: ImageOutcome) -> ImageOutcome:
    """Export a finished image's generator beside its checkpoint (once per checkpoint)."""
    folder = job.folder(image)
    ckpt_path = folder / CHECKPOINT_NAME
    current = _current_export(folder, ckpt_path)
    if current:
        return replace(outcome, exported=current)
    from ingan.export.pipeline import ExportOptions, export_checkpoint  # deployment code: only for --export

    try:
        result = export_checkpoint(ckpt_path, ExportOptions(out_dir=folder, name=EXPORT_NAME,
                                                            device=job.training.options.device))
    except InganError as exc:
        return replace(outcome, status="failed", error=f"export: {first_line(exc)}")
    return replace(outcome, exported=tuple(sorted(p.name for p in result.artifacts)))


def _current_export(folder: Path, ckpt_path: Path) -> tuple[str, ...]:
    """The files of an export made from this very checkpoint (by the sidecar's SHA-256), else ()."""
    import json

    from ingan.metadata import sha256_of, sidecar_path

    model = folder / f"{EXPORT_NAME}.onnx"
    try:
        source = json.loads(sidecar_path(model).read_text(encoding="utf-8"))["source_checkpoint"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    if source != sha256_of(ckpt_path):
        return ()
    return tuple(sorted(p.name for p in folder.glob(f"{EXPORT_NAME}*") if p.is_file()))
