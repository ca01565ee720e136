"""What the fleet command knows about its images: every group's events and results, applied to
the manifest (written as groups start and end) and to the progress view. Both runners (this
process, Ray) report through one `FleetRecord`, so they keep the manifest alike."""

from __future__ import annotations

from typing import Callable

from ingan.fleet.job import GroupJob, ImageOutcome, JobResult, Progress
from ingan.fleet.manifest import Manifest
from ingan.fleet.progress import FleetView


class FleetRecord:
    def __init__(self, manifest: Manifest, view: FleetView,
                 on_event: Callable[[Progress], None] | None = None) -> None:
        self.manifest = manifest
        self.view = view
        self.on_event = on_event
        self.budget_stopped = False  # a group stopped at the time budget: start no more
        self._saved: dict[str, int] = {}  # the iteration of each running image's last checkpoint
        self._ended: set[str] = set()  # images whose group reported its end (a Ray event may arrive late)

    def event(self, event: Progress) -> None:
        for stem in event.stems:
            if stem in self._ended:
                continue
            record = self.manifest.images[stem]
            if event.kind in ("start", "saved"):
                self._saved[stem] = event.iteration
            if event.kind == "start":
                record.attempts += 1
                record.started_at = event.iteration
                record.status, record.error = "running", None
                if record.attempts > 1:
                    self.view.note(f"'{stem}': run {record.attempts} resumes at iteration {event.iteration:,} "
                                   f"(on {event.host}, pid {event.pid})")
            record.iteration, record.iters = event.iteration, event.total
            self.view.update(stem, record.status, record.iteration, record.iters)
        if event.kind == "start":
            self.manifest.write()
        if self.on_event is not None:
            self.on_event(event)

    def result(self, result: JobResult) -> None:
        for outcome in result.outcomes:
            self._apply(outcome)
        if result.exit_code == 0 and any(o.status == "partial" and o.started_at is not None for o in result.outcomes):
            self.budget_stopped = True
        self.manifest.write()

    def _apply(self, outcome: ImageOutcome) -> None:
        self._ended.add(outcome.stem)
        record = self.manifest.images[outcome.stem]
        record.status, record.error = outcome.status, outcome.error
        if outcome.iters:
            record.iters = outcome.iters
        if outcome.status != "failed" or outcome.iteration:
            record.iteration = outcome.iteration
        if outcome.losses is not None:
            record.losses = dict(outcome.losses)
        if outcome.train_seconds:
            record.train_seconds = round(outcome.train_seconds, 3)
        if outcome.started_at is not None:
            record.started_at = outcome.started_at
        if outcome.size is not None:
            record.size = outcome.size
        if outcome.exported:
            record.exported = list(outcome.exported)
        self.view.update(outcome.stem, record.status, record.iteration, record.iters)
        if outcome.status == "finished" and outcome.started_at is not None:
            self.view.note(f"finished '{outcome.stem}': {record.iteration:,}/{record.iters:,} iterations")
        elif outcome.status == "failed":
            self.view.note(f"failed '{outcome.stem}': {outcome.error}")

    def lost(self, job: GroupJob, error: str | None) -> None:
        """A group that returned no result: failed with `error`, or (None) stopped before it
        reported: its images keep what their last saves hold (partial) or never began (pending)."""
        for image in job.images:
            record = self.manifest.images[image.stem]
            saved = self._saved.get(image.stem, record.iteration)
            status = "failed" if error is not None else "partial" if saved else "pending"
            self._apply(ImageOutcome(image.stem, status, saved, record.iters, error=error))
        self.manifest.write()

    def interrupted(self) -> None:
        """Aborted (a second Ctrl-C): running images stay where their last saves left them."""
        for stem, record in self.manifest.images.items():
            if record.status == "running":
                record.iteration = self._saved.get(stem, record.iteration)
                record.status = "partial" if record.iteration else "pending"
                self.view.update(stem, record.status, record.iteration, record.iters)
        self.manifest.write()
