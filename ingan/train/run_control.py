"""A training run's plumbing shared by one image and a group: when it stops early, how fast
it went, and its progress bar."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from types import TracebackType
from typing import Any, Callable, Iterator

from ingan.train.budget import TimeBudget

STATUS = {None: "finished", "time budget": "stopped at the time budget", "interrupt": "interrupted"}


def _write_above_bar(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


class StopControl:
    """Ctrl-C / SIGTERM and the time budget, checked after every step.

    The first Ctrl-C (or SIGTERM: timeouts, docker stop, job schedulers) asks the run to
    stop after the current step and save; a second Ctrl-C aborts at once (saves are atomic,
    so the last checkpoint stays intact). Use as a context manager around the loop: the
    previous handlers come back on exit.
    """

    def __init__(self, budget: TimeBudget | None, announce: Callable[[str], None] | None = None) -> None:
        self.budget = budget
        self.announce = announce or _write_above_bar
        self.reason: str | None = None
        self.signum = signal.SIGINT
        self.started = time.monotonic()
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.reason == "interrupt":  # second Ctrl-C: stop right now (atomic writes stay safe)
            raise KeyboardInterrupt
        self.reason, self.signum = "interrupt", signum
        what = "terminated" if signum == signal.SIGTERM else "interrupt"
        self.announce(f"{what}: saving the checkpoint after this iteration (Ctrl-C again to abort)")

    def should_stop(self) -> bool:
        if self.reason is None and self.budget is not None and self.budget.should_stop():
            self.reason = "time budget"
        return self.reason is not None

    @property
    def status(self) -> str:
        return STATUS[self.reason]

    @property
    def exit_code(self) -> int:
        """130 after Ctrl-C, 143 after SIGTERM, else 0."""
        return 128 + int(self.signum) if self.reason == "interrupt" else 0

    def __enter__(self) -> "StopControl":
        self._previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StepClock:
    """The steady iteration rate of a run: without its first step (allocation, kernel
    selection: seconds) and the final save, so a short or interrupted run does not
    report a rate far below the steady one."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None
        self._mark = self.started  # end of the last step, or of the save/monitor after it
        self.last_step_s = 0.0  # how long the last step took (saves and monitors excluded)

    def tick(self) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now
        self.last_step_s = now - self._mark
        self._mark = now

    def pause_ended(self) -> None:
        """Work between steps (a save, a monitor) ended: it is not the next step's time."""
        self._mark = time.monotonic()

    def rate(self, done: int) -> float:
        if done > 1 and self.first is not None and self.last is not None and self.last > self.first:
            return (done - 1) / (self.last - self.first)
        elapsed = time.monotonic() - self.started
        return done / elapsed if elapsed > 0 else 0.0


def progress_bar(total: int, initial: int, quiet: bool, desc: str | None = None) -> Any:
    """The tqdm bar of a run on stderr (redrawn at most every 30 s when not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, disable=quiet, desc=desc,
                mininterval=0.5 if sys.stderr.isatty() else 30.0, file=sys.stderr, smoothing=0.05)


def loss_sync_every(device: Any) -> int:
    """How often (in iterations) the bar reads the losses: each read waits for a GPU."""
    return 1 if device.type == "cpu" else 25


class RunTimer:
    """One run's clock, time budget and stop control, fed by its step callback (one image or
    a group): `step_done()` after each step, `between_steps()` around its saves and monitors."""

    def __init__(self, time_budget: float | None, began: float, finish_probe: Callable[[], float]) -> None:
        self.budget: TimeBudget | None = None
        if time_budget is not None:
            self.budget = TimeBudget(time_budget, began)
            self.budget.finish_took(finish_probe())
        self.stop = StopControl(self.budget)
        self.clock = StepClock()

    def step_done(self) -> None:
        self.clock.tick()
        if self.budget is not None:
            self.budget.step_took(self.clock.last_step_s)

    @contextlib.contextmanager
    def between_steps(self, measures_finish: bool) -> Iterator[None]:
        """Saves and monitors are not step time; a save and a monitor together measure what
        the final ones will cost (`measures_finish`)."""
        started = time.monotonic()
        yield
        if self.budget is not None and measures_finish:
            self.budget.finish_took(time.monotonic() - started)
        self.clock.pause_ended()
