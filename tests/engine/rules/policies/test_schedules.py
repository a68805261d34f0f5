"""The overlap policy of cron schedules and their next fire times, as pure rules."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from engine.input.loading import workflow_from_data
from engine.rules.errors import ValidationError
from engine.rules.policies.schedules import Firing, firing, next_fire, schedule_of
from engine.rules.spec import Overlap, ScheduleSpec

STEPS = [{"id": "a", "run": ["true"]}]


@pytest.mark.parametrize(
    ("overlap", "previous_running", "queued", "expected"),
    [
        (Overlap.SKIP, False, False, Firing.SUBMIT),
        (Overlap.SKIP, True, False, Firing.SKIP),
        (Overlap.QUEUE, False, False, Firing.SUBMIT),
        (Overlap.QUEUE, True, False, Firing.QUEUE),
        (Overlap.QUEUE, True, True, Firing.SKIP),  # at most one firing waits
        (Overlap.ALLOW, True, True, Firing.SUBMIT),
        (Overlap.ALLOW, False, False, Firing.SUBMIT),
    ],
)
def test_a_firing_while_the_previous_run_has_not_ended_follows_the_overlap_policy(
    overlap: Overlap, previous_running: bool, queued: bool, expected: Firing
) -> None:
    assert firing(overlap, previous_running, queued) is expected


def test_the_plain_cron_form_means_overlap_skip_and_the_object_form_is_read_whole() -> None:
    plain = workflow_from_data({"name": "n", "schedule": "0 2 * * *", "steps": STEPS})
    assert schedule_of(plain) == ScheduleSpec(cron="0 2 * * *", overlap=Overlap.SKIP)
    full = workflow_from_data(
        {"name": "n", "schedule": {"cron": "0 2 * * *", "overlap": "queue"}, "steps": STEPS}
    )
    assert schedule_of(full) == ScheduleSpec(cron="0 2 * * *", overlap=Overlap.QUEUE)
    assert schedule_of(workflow_from_data({"name": "n", "steps": STEPS})) is None


def test_next_fire_is_the_first_cron_time_after_the_given_local_time() -> None:
    zone = timezone(timedelta(hours=1))
    after = datetime(2026, 11, 26, 5, 15, tzinfo=zone)
    assert next_fire("0 2 * * *", after) == datetime(2026, 11, 27, 2, 0, tzinfo=zone)
    assert next_fire("*/10 * * * *", after) == datetime(2026, 11, 26, 5, 20, tzinfo=zone)


def test_a_bad_overlap_or_an_unknown_schedule_key_is_reported_where_it_is() -> None:
    document = {
        "name": "n",
        "schedule": {"cron": "0 2 * * *", "overlap": "sometimes", "extra": 1},
        "steps": STEPS,
    }
    with pytest.raises(ValidationError) as raised:
        workflow_from_data(document)
    problems = {p.location: p.message for p in raised.value.problems}
    assert problems["$.schedule.overlap"] == 'unknown value "sometimes"'
    assert problems["$.schedule.extra"].startswith("unknown key `extra`")
