"""A fleet run from start to end: check everything, decide what each image needs, group, run
(in this process or on Ray), and sum up.

Every one-line error (an output folder that is a file or holds another fleet's manifest, a
missing package, an unreachable cluster, a device that is not there) comes before the output
folder is created or anything trains. Unreadable images are not such errors: each is
recorded as failed in the manifest and the others train.

What each image needs, decided from the manifest and its folder:
  * finished in the manifest, its ckpt.pt present (and with --export, exported): skipped;
  * a ckpt.pt present otherwise: handed to a group, which resumes it (or, if it is in fact
    finished, only records it);
  * no ckpt.pt (or --force): its image is read here first (a bad one fails now), then it
    trains from the start.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ingan.errors import InganError, first_line
from ingan.extras import require
from ingan.fleet.inputs import FleetImage, GroupCandidate, plan_groups
from ingan.fleet.job import CHECKPOINT_NAME, FleetTraining, GroupJob, Progress
from ingan.fleet.manifest import ImageRecord, Manifest, fleet_settings, manifest_path
from ingan.fleet.ray_runner import RayOptions
from ingan.fsutil import ensure_output_dir

log = logging.getLogger(__name__)

# --group's default where the groups train on CUDA. Measured on an H200 with the paper preset
# (benchmarks/results/2026-12-04-h200-train-group): a group of 4 trains 2.4-2.9x the images x
# iterations per second of one image in 16-17 GiB, so it fits a 24 GB card; 16 gives 7.6-8.6x
# but needs ~65 GiB (pass --group 16 on an 80 GB+ card). On a CPU grouping does not pay
# (0.88-0.91x per CPU second, benchmarks/results/2026-12-04-cpu-group-step): 1 there.
CUDA_GROUP = 4
CPU_GROUP = 1
EXPORT_MODULES = ("torch", "onnx", "onnxruntime", "onnxscript")


@dataclass(frozen=True)
class FleetSpec:
    """One fleet command: its images, where they go, and how they train."""

    images: tuple[FleetImage, ...]
    training: FleetTraining  # its deadline is set from options.time_budget and `began`
    group_size: int | None = None  # None: CUDA_GROUP on CUDA, else CPU_GROUP
    force: bool = False
    ray: RayOptions | None = None
    began: float = field(default_factory=time.monotonic)  # the command's start (its --time-budget counts from it)


@dataclass(frozen=True)
class FleetSummary:
    counts: dict[str, int]  # status -> images of this command
    skipped: int  # finished before this command
    exit_code: int  # 0, 130 / 143 after a signal (failed images: see `failures`)
    manifest: Path
    failures: tuple[tuple[str, str], ...]  # (stem, error)
    group_size: int
    elapsed: float

    @property
    def images(self) -> int:
        return sum(self.counts.values())


def train_fleet(spec: FleetSpec, on_event: Callable[[Progress], None] | None = None) -> FleetSummary:
    """Train every image of `spec` (see the module docstring); `on_event(Progress)` sees every
    group's news as the command receives it."""
    training = _absolute(spec)
    out_dir, config = training.out_dir, training.config
    if out_dir.exists() and not out_dir.is_dir():
        ensure_output_dir(out_dir)  # raises its one-line error
    path = manifest_path(out_dir)
    settings = fleet_settings(config.to_dict(), training.max_side)
    existing = None if spec.force else Manifest.read(path)
    if existing is not None:
        existing.check_same_fleet(settings, spec.images)
    require("Training (ingan-train)", ("torch",))
    if training.export:
        require("--export", EXPORT_MODULES, extra="export")
    if spec.ray is not None:
        require("Training a fleet on Ray (--ray)", ("ray",))

    manifest = existing or Manifest(path, settings)
    candidates, skipped = _decide(spec, training, manifest)
    if candidates and spec.ray is not None:
        from ingan.fleet.ray_runner import connect

        connect(spec.ray.address, training.options.quiet)
    group_size = spec.group_size or (_default_group(spec) if candidates else CPU_GROUP)

    ensure_output_dir(out_dir)
    if spec.force:
        for image in spec.images:
            (training.folder(image) / CHECKPOINT_NAME).unlink(missing_ok=True)
    manifest.write()

    jobs = [GroupJob(group, training) for group in plan_groups(candidates, group_size)]
    where = "Ray" if spec.ray is not None else "this process"
    log.info("fleet: %d images (%d to train in %d groups of up to %d on %s, %d already finished) | preset %s | "
             "crop %d | %s iterations | out %s", len(spec.images), len(candidates), len(jobs), group_size, where,
             skipped, config.preset, config.crop_size, f"{config.iters:,}", out_dir)
    return _run(spec, jobs, manifest, skipped, group_size, on_event)


def _absolute(spec: FleetSpec) -> FleetTraining:
    """The tasks' view: an absolute OUT (a worker's working folder is not ours) and the
    --time-budget as a wall-clock deadline (a worker's monotonic clock is not ours)."""
    training = spec.training
    deadline = None
    if training.options.time_budget is not None:
        deadline = time.time() + training.options.time_budget - (time.monotonic() - spec.began)
    return replace(training, out_dir=Path(os.path.abspath(training.out_dir)), deadline=deadline)


def _decide(spec: FleetSpec, training: FleetTraining, manifest: Manifest) -> tuple[list[GroupCandidate], int]:
    """Each image's record made current for this command, and the images to hand to groups."""
    from ingan.imageio import load_image

    candidates, skipped = [], 0
    for image in spec.images:
        record = manifest.images.get(image.stem)
        if record is None or spec.force:
            record = manifest.images[image.stem] = ImageRecord(source=str(image.path))
        record.iters = training.config.iters
        record.started_at, record.attempts = None, 0
        folder = training.folder(image)
        has_checkpoint = (folder / CHECKPOINT_NAME).exists() and not spec.force
        if has_checkpoint and record.status == "finished" and (not training.export or _exported(folder, record)):
            skipped += 1
            continue
        if has_checkpoint:  # the group that takes it resumes it, or finds it finished
            record.status, record.error = ("partial" if record.iteration else "pending"), None
            candidates.append(GroupCandidate(image, record.iteration, _pixels(record.size)))
            continue
        try:
            pixels = load_image(image.path, max_side=training.max_side).pixels
        except InganError as exc:
            record.status, record.error, record.iteration = "failed", first_line(exc), 0
            continue
        h, w = pixels.shape[:2]
        record.status, record.error, record.iteration, record.size = "pending", None, 0, f"{w}x{h}"
        record.losses, record.train_seconds, record.exported = None, 0.0, []
        candidates.append(GroupCandidate(image, 0, h * w))
    return candidates, skipped


def _exported(folder: Path, record: ImageRecord) -> bool:
    return bool(record.exported) and all((folder / name).is_file() for name in record.exported)


def _pixels(size: str | None) -> int:
    try:
        w, h = (int(v) for v in (size or "").split("x"))
    except ValueError:
        return 0
    return w * h


def _default_group(spec: FleetSpec) -> int:
    """--group's default: CUDA_GROUP where the groups train on CUDA (with --ray: where tasks
    get GPUs), else CPU_GROUP."""
    if spec.ray is not None:
        from ingan.fleet.ray_runner import gpus_per_task

        return CUDA_GROUP if gpus_per_task(spec.ray) > 0 else CPU_GROUP
    from ingan.model.device import torch_device

    return CUDA_GROUP if torch_device(spec.training.options.device).type == "cuda" else CPU_GROUP


def _run(spec: FleetSpec, jobs: list[GroupJob], manifest: Manifest, skipped: int, group_size: int,
         on_event: Callable[[Progress], None] | None) -> FleetSummary:
    from ingan.fleet.progress import FleetView
    from ingan.fleet.record import FleetRecord

    stems = [image.stem for image in spec.images]
    view = FleetView({stem: (manifest.images[stem].status, manifest.images[stem].iteration,
                             manifest.images[stem].iters) for stem in stems}, spec.training.options.quiet)
    record = FleetRecord(manifest, view, on_event)
    try:
        if not jobs:
            code = 0
        elif spec.ray is not None:
            from ingan.fleet.ray_runner import run_on_ray

            code = run_on_ray(jobs, record, spec.ray)
        else:
            from ingan.fleet.local import run_local

            code = run_local(jobs, record)
    finally:
        view.close()
        manifest.write()
    counts = dict.fromkeys(("finished", "partial", "pending", "running", "failed"), 0)
    for stem in stems:
        counts[manifest.images[stem].status] += 1
    failures = tuple((stem, manifest.images[stem].error or "unknown error") for stem in stems
                     if manifest.images[stem].status == "failed")
    return FleetSummary(counts, skipped, code, manifest.path, failures, group_size,
                        time.monotonic() - spec.began)
