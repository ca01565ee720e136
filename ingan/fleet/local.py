"""A fleet on this machine, without Ray: the groups train one after another in this process.

Ctrl-C and SIGTERM behave as for one image: the group in progress finishes its step and
saves every member (run_group's handling), no further group starts, and the command exits
130 / 143; a second Ctrl-C aborts at once (the last saves stay intact). Once a group stops
at the time budget, no further group starts. A group that fails with an unexpected error
(a bug) is logged with its traceback and recorded as failed; the other groups go on.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ingan.errors import first_line
from ingan.fleet.job import GroupJob, run_job
from ingan.fleet.record import FleetRecord

log = logging.getLogger(__name__)


def run_local(jobs: Sequence[GroupJob], record: FleetRecord) -> int:
    """Train `jobs` in order; the exit code (0, or 130 / 143 after a signal)."""
    from ingan.train.run_control import StopControl

    stop = StopControl(None, announce=lambda message: record.view.note(
        "interrupt: no further group will start (Ctrl-C again to abort)"))
    with stop:
        for job in jobs:
            if stop.should_stop() or record.budget_stopped:
                break
            try:
                result = run_job(job, record.event, stop.should_stop)
            except KeyboardInterrupt:  # the second Ctrl-C
                record.interrupted()
                return 130
            except Exception as exc:  # a bug: keep its traceback, train the other groups
                log.error("a group of %d images failed with an unexpected error", len(job.images), exc_info=True)
                record.lost(job, f"internal error ({type(exc).__name__}: {first_line(exc)}); please report it")
                continue
            record.result(result)
            if result.exit_code:
                return result.exit_code
    return stop.exit_code
