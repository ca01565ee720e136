"""--time-budget keeps its promise: stop while one more step and the finish still fit."""

from __future__ import annotations

from ingan.train.budget import MARGIN, TimeBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_stops_while_the_next_step_and_the_save_still_fit():
    clock = Clock()
    budget = TimeBudget(60.0, began=clock.now - 5.0, clock=clock)  # 5 s of start-up already spent
    budget.finish_took(4.0)  # a save + monitor costs 4 s
    spent = 5.0
    steps = 0
    while not budget.should_stop():
        clock.now += 2.0  # each step takes 2 s
        budget.step_took(2.0)
        steps += 1
        spent += 2.0
    total = spent + 4.0  # ... then the final save and monitor
    assert total <= 60.0, total
    assert total > 60.0 - MARGIN * (2.0 + 4.0) - 2.0  # and it does not stop needlessly early


def test_a_slow_step_makes_it_more_careful():
    clock = Clock()
    budget = TimeBudget(30.0, began=clock.now, clock=clock)
    for _ in range(3):
        budget.step_took(1.0)
    clock.now += 20.0
    assert not budget.should_stop()
    budget.step_took(9.0)  # an unusually large output size
    assert budget.should_stop()


def test_the_largest_finish_measured_counts():
    budget = TimeBudget(10.0, began=0.0, clock=lambda: 0.0)
    budget.finish_took(3.0)
    budget.finish_took(1.0)
    assert budget.finish_s == 3.0 and budget.left() == 10.0


def test_the_warm_up_steps_count_only_until_a_later_step_is_known():
    clock = Clock()
    budget = TimeBudget(60.0, began=clock.now, clock=clock)
    budget.step_took(20.0)  # the first steps: allocation, kernel selection
    assert budget.next_step_s() == 20.0
    budget.step_took(8.0)
    assert budget.next_step_s() == 20.0
    budget.step_took(1.0)
    assert budget.next_step_s() == 1.0
    clock.now += 40.0
    assert not budget.should_stop()  # 20 s left: one more 1 s step fits
