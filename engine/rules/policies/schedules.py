"""Cron schedules (`schedule:` of a workflow, fired by `wfa serve`): when one fires
next, and what a firing does while the schedule's previous run has not ended.

A nightly run that waits for an approval must not pile up a copy per night:
`overlap` says what to do. `skip` (the default) drops the firing; `queue` keeps
one firing waiting and submits it once the previous run ends (further firings
meanwhile are dropped, so at most one waits); `allow` submits at once.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from croniter import croniter

from engine.rules.spec import Overlap, ScheduleSpec, WorkflowSpec

__all__ = ["Firing", "firing", "next_fire", "schedule_of"]


class Firing(StrEnum):
    SUBMIT = "submit"  # submit a run now
    QUEUE = "queue"  # submit one when the previous run ends
    SKIP = "skip"  # drop this firing


def schedule_of(spec: WorkflowSpec) -> ScheduleSpec | None:
    """The workflow's schedule; the plain form `schedule: "0 2 * * *"` means overlap skip."""
    if isinstance(spec.schedule, str):
        return ScheduleSpec(cron=spec.schedule)
    return spec.schedule


def firing(overlap: Overlap, previous_running: bool, queued: bool) -> Firing:
    """What a due firing does, given whether the schedule's previous run has not ended
    and whether a firing already waits for it."""
    if not previous_running or overlap is Overlap.ALLOW:
        return Firing.SUBMIT
    if overlap is Overlap.QUEUE and not queued:
        return Firing.QUEUE
    return Firing.SKIP


def next_fire(cron: str, after: datetime) -> datetime:
    """The first time after `after` (an aware local time) that `cron` names."""
    found: datetime = croniter(cron, after).get_next(datetime)
    return found
