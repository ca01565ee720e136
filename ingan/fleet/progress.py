"""The fleet's live progress on stderr: one bar over every image's iterations, with images
done / running / failed / pending, the fleet's rate (images x iterations per second) and ETA.

A single run's bar (ingan/train/run_control.py) counts one image's iterations; here the
bar's total is the iterations of every image still meant to finish (a failed image leaves
it), and its count is the sum of where each image stands, so a retried task that resumed
from an earlier save moves the count back by the work it lost.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Mapping

from ingan.train.run_control import progress_bar


@dataclass
class _Image:
    status: str
    iteration: int
    iters: int


class FleetView:
    """`update` as images move, `note` for a line above the bar, `close` at the end; `quiet`
    shows nothing (errors and the summary are the command's to print)."""

    def __init__(self, images: Mapping[str, tuple[str, int, int]], quiet: bool) -> None:
        self.quiet = quiet
        self._images = {stem: _Image(*state) for stem, state in images.items()}
        self._bar: Any = progress_bar(self._total(), self._done(), quiet, desc="fleet")
        self._refresh_postfix()

    def _total(self) -> int:
        return sum(i.iters for i in self._images.values() if i.status != "failed")

    def _done(self) -> int:
        return sum(min(i.iteration, i.iters) for i in self._images.values() if i.status != "failed")

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for image in self._images.values():
            counts[image.status] = counts.get(image.status, 0) + 1
        return counts

    def _refresh_postfix(self) -> None:
        c = self.counts()
        self._bar.set_postfix_str(
            f"images: {c.get('finished', 0)}/{len(self._images)} done, {c.get('running', 0)} running, "
            f"{c.get('failed', 0)} failed, {c.get('pending', 0) + c.get('partial', 0)} waiting",
            refresh=False,
        )

    def update(self, stem: str, status: str, iteration: int, iters: int | None = None) -> None:
        image = self._images[stem]
        image.status, image.iteration = status, iteration
        if iters:
            image.iters = iters
        total, done = self._total(), self._done()
        if total != self._bar.total:
            self._bar.total = total
        self._refresh_postfix()
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)  # redraws at most every mininterval
        else:  # a retried group resumed from an earlier save
            self._bar.n = done

    def note(self, message: str) -> None:
        if not self.quiet:
            self._bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self._bar.close()
