"""The fleet side of `ingan-train`: its extra options, when a command is a fleet, and the
command itself. Imported by ingan/train/cli.py at start, so nothing heavy at module level."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import click
from click.core import ParameterSource

from ingan.errors import InganError

F = TypeVar("F", bound=Callable[..., Any])

FLEET_OPTIONS = ("group", "ray", "gpus_per_task", "cpus_per_task", "max_retries", "export")
RAY_OPTIONS = ("gpus_per_task", "cpus_per_task", "max_retries")
DEFAULT_OUT = "runs"  # OUT/<image stem>/ckpt.pt: where one image's run would write by default

FLEET_HELP = (
    "With several IMAGES, a folder or a glob (quote it: 'photos/*.jpg'), a fleet: every image trains "
    "into OUT/<image name>/ckpt.pt (default OUT: runs) and OUT/fleet.json lists each image's status, "
    "iterations, losses, time and error. Re-running the same command skips finished images and resumes "
    "partial ones."
)


def fleet_options(fn: F) -> F:
    """ingan-train's options for fleets (any of them makes even one image a fleet)."""
    options = [
        click.option("--group", type=click.IntRange(min=1), metavar="G",
                     help="Train up to G images in one batched step (images of one group share each step's "
                          "crop size and output size). Pays on a GPU (measured 2.4-2.9x images x it/s at "
                          "G=4, 7.6-8.6x at G=16 on an H200), not on a CPU. [default: 4 on CUDA, 1 on a CPU]"),
        click.option("--ray", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
                     help="Run the groups as tasks on a Ray cluster: its ADDRESS (auto, HOST:PORT, "
                          "ray://HOST:PORT), or none to start a local cluster on this machine (one task per "
                          "--cpus-per-task). Put a bare --ray after the IMAGES. Several machines need IMAGES "
                          "and OUT on a shared file system. Needs pip install 'ingan[fleet]'."),
        click.option("--gpus-per-task", type=click.FloatRange(min=0), metavar="N",
                     help="GPUs per Ray task, fractional allowed (0.5: two groups share a GPU). "
                          "[default: 1 where the cluster has GPUs, else 0]"),
        click.option("--cpus-per-task", type=click.FloatRange(min=0, min_open=True), default=1.0,
                     show_default=True, metavar="N",
                     help="CPUs per Ray task (also its torch threads)."),
        click.option("--max-retries", type=click.IntRange(min=0), default=3, show_default=True, metavar="N",
                     help="Retries of a Ray task whose worker died (kill -9, a lost node); a retry resumes "
                          "from the last save."),
        click.option("--export", is_flag=True,
                     help="Export each finished generator to OUT/<image name>/model.onnx (ingan-export's "
                          "defaults), so `ingan-serve OUT` serves the fleet. Needs pip install "
                          "'ingan[export]'."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def wants_fleet(ctx: click.Context, images: Sequence[Path]) -> bool:
    """A fleet: several IMAGES, a folder, a pattern, or any fleet option; else one image's run."""
    from ingan.fleet.inputs import wants_many

    return wants_many(images) or any(_given(ctx, name) for name in FLEET_OPTIONS)


def train_fleet_command(ctx: click.Context, images: Sequence[Path], began: float, **opt: Any) -> int:
    """`ingan-train IMAGES...` for a fleet; the exit code (failed images: a one-line error, exit 1)."""
    from ingan.fleet.fleet import FleetSpec, train_fleet
    from ingan.fleet.inputs import discover
    from ingan.fleet.job import FleetTraining
    from ingan.fleet.ray_runner import RayOptions, parse_address
    from ingan.train.cli import new_run_config, preset_intervals, run_options

    ray = None
    if opt["ray"] is not None:
        ray = RayOptions(parse_address(opt["ray"]), opt["gpus_per_task"], opt["cpus_per_task"], opt["max_retries"])
    else:
        alone = [f"--{name.replace('_', '-')}" for name in RAY_OPTIONS if _given(ctx, name)]
        if alone:
            raise click.UsageError(f"{', '.join(alone)} only apply with --ray")
    if opt["resume"] is not None:
        raise click.UsageError("--resume continues one image's run; a fleet continues by re-running its command "
                               "(finished images are skipped, partial ones resume)")
    if opt["init_from"] is not None:
        raise click.UsageError("--init-from starts one image's run from a generator; it does not apply to a fleet")
    found = discover(images)
    training = FleetTraining(Path(opt["out"] or DEFAULT_OUT), new_run_config(opt),
                             run_options(opt, preset_intervals(opt["preset"])), opt["max_side"], opt["export"])
    spec = FleetSpec(tuple(found), training, group_size=opt["group"], force=opt["force"], ray=ray, began=began)
    # Each group's own end-of-run line would interleave with the fleet's view and summary.
    logging.getLogger("ingan.train.group_run").setLevel(logging.WARNING)
    summary = train_fleet(spec)
    from ingan.cli.common import format_duration

    counts = summary.counts
    unfinished = counts["partial"] + counts["pending"]
    status = ("interrupted" if summary.exit_code else
              "stopped at the time budget" if unfinished and training.options.time_budget is not None else "finished")
    click.echo(
        f"fleet {status}: {counts['finished']}/{summary.images} images finished ({summary.skipped} already were), "
        f"{counts['partial']} partial, {counts['pending']} not started, {counts['failed']} failed in "
        f"{format_duration(summary.elapsed)} (groups of up to {summary.group_size}); manifest {summary.manifest}"
    )
    if summary.exit_code:  # Ctrl-C / SIGTERM: 130 / 143, failed images or not
        if summary.failures:
            click.echo(f"{len(summary.failures)} images failed; their errors are in {summary.manifest}", err=True)
        click.echo("continue with the same command: finished images are skipped, partial ones resume", err=True)
        return summary.exit_code
    if summary.failures:
        stem, error = summary.failures[0]
        raise InganError(
            f"{len(summary.failures)} of {summary.images} images failed (first: '{stem}': {error}); fix them and "
            f"re-run the same command (finished images are skipped); all errors are in {summary.manifest}"
        )
    if unfinished:
        click.echo("continue with the same command: finished images are skipped, partial ones resume", err=True)
    return 0
