"""`--time-budget` as a promise: the whole command, its final save and monitor included, ends
inside the budget. (Stopping when the budget is *reached* overran it by the last iteration and
the save: 363 s for --time-budget 330s.)"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

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
