"""A fleet on a Ray cluster: one Ray core task per group (`run_job`), with retries.

Each task asks for `--cpus-per-task` CPUs (and runs torch with that many threads) and
`--gpus-per-task` GPUs (fractional: several groups share a GPU); Ray sets each task's
CUDA_VISIBLE_DEVICES, and tasks that ask for GPUs get a fresh worker process each (Ray's
default max_calls=1 for them). A
task whose worker dies (kill -9, a lost node, Ray's out-of-memory killer) is retried up to
`--max-retries` times; the retry calls `run_job` again, which resumes every image from its
last save. Every node reads the images and writes OUT directly, so on several machines OUT
and the images must be on a shared file system at the same paths.

Progress reaches the command through a small actor (`ProgressBoard`, no CPU) that tasks post
events to (without waiting: a task blocked in a Ray call lends its CPU to another task, so
tasks make no waiting Ray call while they train) and the command drains while it waits.

Ctrl-C / SIGTERM: the command asks every task to stop by creating a marker file in OUT
(`.fleet-stop.<random>.tmp`, removed at the end). A running task sees it after its next
step and turns it into the training's own Ctrl-C (ingan/train/run_control.py): the group
saves every member and returns; a task that starts afterwards returns at once. The command
waits for them, then exits 130 / 143. (Not `ray.cancel(force=False)`: Ray reported such a
task as cancelled while it was still saving, so the command could not wait for its save.)
A second Ctrl-C cancels the tasks with force (their workers are killed; the last saves stay
intact) and exits at once. Once a group stops at the time budget, the other tasks are asked
to stop the same way.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ingan.errors import InganError, OptionError, first_line
from ingan.fleet.job import GroupJob, JobResult, Progress, run_job
from ingan.fleet.record import FleetRecord

log = logging.getLogger(__name__)

LOCAL = "local"  # ray.init's own name for "start a new local cluster"
POLL_S = 0.5  # how often the command collects progress and results
_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[A-Za-z0-9_.\-\[\]:]+:\d+)$")


@dataclass(frozen=True)
class RayOptions:
    address: str = LOCAL  # local | auto | HOST:PORT | ray://HOST:PORT
    gpus_per_task: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_task: float = 1.0
    max_retries: int = 3


def parse_address(text: str) -> str:
    """The value of --ray: empty or 'local' (start a local cluster), 'auto', HOST:PORT, ray://HOST:PORT."""
    address = text.strip() or LOCAL
    if not _ADDRESS.match(address):
        raise OptionError(
            f"--ray '{text}' is not a Ray address (auto, HOST:PORT or ray://HOST:PORT); for a local cluster "
            "give --ray with no value after the images, or --ray=local"
        )
    return address


def connect(address: str, quiet: bool) -> None:
    """Join the cluster at `address`, or start a local one (nothing if this process already
    joined one, e.g. a test's cluster)."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING if quiet else logging.INFO}
    if address == LOCAL:
        kwargs["include_dashboard"] = False
    try:
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        raise InganError(
            f"cannot connect to the Ray cluster at '{address}': {first_line(exc)}; start one with "
            "`ray start --head` and pass its address, or give --ray without an address for a local cluster"
        ) from None


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def gpus_per_task(options: RayOptions) -> float:
    """--gpus-per-task, or its default: 1 where the cluster has GPUs, else 0."""
    if options.gpus_per_task is not None:
        return options.gpus_per_task
    return 1.0 if cluster_gpus() >= 1 else 0.0


class ProgressBoard:
    """Events posted by tasks, collected by the command (a Ray actor)."""

    def __init__(self) -> None:
        self._events: list[Progress] = []

    def post(self, event: Progress) -> None:
        self._events.append(event)

    def drain(self) -> list[Progress]:
        events, self._events = self._events, []
        return events

    def flush(self) -> None:
        """A no-op: a caller waiting for it knows that its earlier posts arrived (Ray runs one
        caller's actor calls in order)."""


class _StopFile:
    """The command's stop request: its marker file in OUT exists. Looked at (a stat, also on a
    shared file system) at most every POLL_S; a task asks after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checked = 0.0
        self.seen = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.seen and now - self.checked >= POLL_S:
            self.checked = now
            self.seen = self.path.exists()
        return self.seen


def _train_group_task(job: GroupJob, board: Any, threads: int, stop_file: Path) -> JobResult:
    import ray
    import torch

    # Ray sets OMP_NUM_THREADS per task, but a reused worker keeps the thread count torch read
    # when it was first imported (checked: a 2-CPU task ran with 1 thread after a 1-CPU one).
    torch.set_num_threads(threads)
    result = run_job(job, lambda event: board.post.remote(event), _StopFile(stop_file))
    ray.get(board.flush.remote())  # the command sees this group's events before its result
    return result


def _task_error(exc: Exception) -> str:
    """An image's error for a task that raised: a node without ingan, or a bug (logged in full)."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, ImportError):
        return (f"a Ray worker cannot import ingan ({first_line(cause)}); install it on every node of the "
                "cluster: pip install 'ingan[fleet]'")
    log.error("%s", exc)  # the task's traceback
    return f"internal error ({type(cause).__name__}: {first_line(cause)}); please report it"


def _task_name(job: GroupJob) -> str:
    """What `ray list tasks` and the dashboard show for a group."""
    return f"ingan-train {','.join(image.stem for image in job.images)}"[:200]


def run_on_ray(jobs: Sequence[GroupJob], record: FleetRecord, options: RayOptions) -> int:
    """Run `jobs` as Ray tasks until all ended; the exit code (0, or 130 / 143 after a signal)."""
    import ray
    from ray.exceptions import RayTaskError, TaskCancelledError

    from ingan.train.run_control import StopControl

    gpus = gpus_per_task(options)
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    task = ray.remote(_train_group_task)
    resources = {"num_cpus": options.cpus_per_task, "num_gpus": gpus, "max_retries": options.max_retries,
                 "retry_exceptions": False}
    threads = max(1, round(options.cpus_per_task))
    # Named like ingan.fsutil's temporary files, so one left by a killed command is cleaned up.
    stop_file = jobs[0].training.out_dir / f".fleet-stop.{secrets.token_hex(4)}.tmp"
    running = {task.options(name=_task_name(job), **resources).remote(job, board, threads, stop_file): job
               for job in jobs}
    stop = StopControl(None, announce=lambda message: record.view.note(
        "interrupt: every group saves after its current step and stops (Ctrl-C again to abort)"))
    stopping = False
    try:
        with stop:
            while running:
                ready, _ = ray.wait(list(running), num_returns=len(running), timeout=POLL_S)
                for event in ray.get(board.drain.remote()):
                    record.event(event)
                for ref in ready:
                    job = running.pop(ref)
                    try:
                        result = ray.get(ref)
                    except TaskCancelledError:
                        record.lost(job, None)
                    except RayTaskError as exc:
                        record.lost(job, _task_error(exc))
                    except ray.exceptions.RayError as exc:  # the worker or node died more than --max-retries times
                        record.lost(job, f"its Ray task was lost {options.max_retries + 1} times "
                                         f"({type(exc).__name__}: {first_line(exc)}); re-run the command to resume it")
                    else:
                        record.result(result)
                if not stopping and running and (stop.should_stop() or record.budget_stopped):
                    stopping = True
                    stop_file.touch()
    except KeyboardInterrupt:  # the second Ctrl-C
        for ref in running:
            ray.cancel(ref, force=True)
        record.interrupted()
        return 130
    finally:
        stop_file.unlink(missing_ok=True)
    return stop.exit_code
