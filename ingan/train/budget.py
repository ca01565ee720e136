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
        self.finish_s = 0.0

    def step_took(self, seconds: float) -> None:
        self._steps.append(seconds)

    def finish_took(self, seconds: float) -> None:
        """A save + monitor (or the start-up probe of their cost) took this long."""
        self.finish_s = max(self.finish_s, seconds)

    def next_step_s(self) -> float:
        return max(self._steps, default=0.0)

    def left(self) -> float:
        return self.seconds - (self.clock() - self.began)

    def should_stop(self) -> bool:
        """True when another step plus the finish might not end inside the budget."""
        return self.left() <= MARGIN * (self.next_step_s() + self.finish_s)


def finish_cost(trainers: Sequence[Any]) -> float:
    """Seconds the final save + monitor of these trainers may take, probed once: each
    checkpoint written to memory, and one 1x retarget times what a monitor computes (six
    tiles of up to 2.25x the pixels and the calibration fit: about nine 1x forwards)."""
    import torch

    total = 0.0
    for trainer in trainers:
        started = time.monotonic()
        torch.save(trainer.state(), io.BytesIO())
        saved = time.monotonic()
        trainer.retarget(1.0, 1.0)
        total += (saved - started) + 9 * (time.monotonic() - saved)
    return total
