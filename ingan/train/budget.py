"""`--time-budget` as a promise: the whole command, its final save and monitor included, ends
inside the budget. (Stopping when the budget is *reached* overran it by the last iteration and
the save: 363 s for --time-budget 330s.)"""

from __future__ import annotations

import io
import time
from collections import deque
from typing import Any, Callable, Sequence

# Safety factor on the estimates: a step's time varies with its random output size.
MARGIN = 1.25
# The first steps allocate memory and pick kernels for new shapes (measured on 2 CPU cores with
# the quick preset: 12 s and 8 s, then 0.55 s per step); they do not predict later steps.
WARMUP_STEPS = 2


class TimeBudget:
    """Decides, after each step, whether one more step and then the finish still fit.

    `began` is the command's start (imports and loading count too); the finish (final save
    and monitor) is estimated by a probe at the start and refined by every periodic save
    and monitor measured on the way.
    """

    def __init__(self, seconds: float, began: float, clock: Callable[[], float] = time.monotonic,
                 window: int = 20) -> None:
        self.seconds = float(seconds)
        self.began = began
        self.clock = clock
        self._steps: deque[float] = deque(maxlen=window)
        self._warmup: list[float] = []
        self.finish_s = 0.0

    def step_took(self, seconds: float) -> None:
        if len(self._warmup) < WARMUP_STEPS:
            self._warmup.append(seconds)  # allocation and kernel selection: not what later steps cost
            return
        self._steps.append(seconds)

    def finish_took(self, seconds: float) -> None:
        """A save + monitor (or the start-up probe of their cost) took this long."""
        self.finish_s = max(self.finish_s, seconds)

    def next_step_s(self) -> float:
        """The slowest recent step (steps vary with their random output size); the warm-up
        steps only until there is another to go by."""
        return max(self._steps, default=max(self._warmup, default=0.0))

    def left(self) -> float:
        return self.seconds - (self.clock() - self.began)

    def should_stop(self) -> bool:
        """True when another step plus the finish might not end inside the budget."""
        return self.left() <= MARGIN * (self.next_step_s() + self.finish_s)


def finish_cost(trainers: Sequence[Any]) -> float:
    """Seconds the final save + monitor of these trainers take, probed once by doing that work
    in memory: each checkpoint serialised, each monitor computed (not encoded). Later saves and
    monitors during the run refine the estimate (`TimeBudget.finish_took`)."""
    import torch

    from ingan.train.monitor import monitor_image

    started = time.monotonic()
    for trainer in trainers:
        torch.save(trainer.state(), io.BytesIO())
        monitor_image(trainer)
    return time.monotonic() - started
