"""Every duration a workflow or config takes is finite and at most one year, and says so."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from engine.input.loading import load_config, workflow_from_data
from engine.rules.errors import ValidationError
from engine.rules.events import iso
from engine.rules.policies.retry import retry_delay
from engine.rules.spec import MAX_DURATION, RetrySpec

HUGE = (10_000_000_000, math.inf, MAX_DURATION + 1)


def workflow_problems(step: dict[str, Any], **workflow: Any) -> list[str]:
    document = {"name": "t", **workflow, "steps": [{"id": "a", "run": ["true"], **step}]}
    with pytest.raises(ValidationError) as excinfo:
        workflow_from_data(document)
    return [str(p) for p in excinfo.value.problems]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    ("step", "workflow", "location"),
    [
        ({"timeout": "V"}, {}, "$.steps[0].timeout"),
        ({}, {"timeout": "V"}, "$.timeout"),
        ({"retry": {"initial_delay": "V"}}, {}, "$.steps[0].retry.initial_delay"),
        ({"retry": {"max_delay": "V"}}, {}, "$.steps[0].retry.max_delay"),
        ({"cache": {"ttl": "V"}}, {}, "$.steps[0].cache.ttl"),
    ],
)
def test_a_duration_over_one_year_is_refused_naming_the_limit(
    value: float, step: dict[str, Any], workflow: dict[str, Any], location: str
) -> None:
    def put(d: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (put(v) if isinstance(v, dict) else value if v == "V" else v) for k, v in d.items()
        }

    found = workflow_problems(put(step), **put(workflow))
    assert len(found) == 1 and found[0].startswith(f"{location}:")
    assert "31536000" in found[0] and "1 year" in found[0]


@pytest.mark.parametrize("value", [math.nan, -1.0, 0.0])
def test_a_timeout_that_is_not_a_positive_number_is_refused(value: float) -> None:
    assert len(workflow_problems({"timeout": value})) == 1


def test_exactly_one_year_is_accepted() -> None:
    spec = workflow_from_data(
        {"name": "t", "timeout": MAX_DURATION, "steps": [{"id": "a", "run": ["true"]}]}
    )
    assert spec.timeout == MAX_DURATION


@pytest.mark.parametrize("value", [math.inf, 101.0])
def test_an_unbounded_backoff_is_refused(value: float) -> None:
    found = workflow_problems({"retry": {"backoff": value}})
    assert len(found) == 1 and found[0].startswith("$.steps[0].retry.backoff:")


@pytest.mark.parametrize(
    ("section", "limit"),
    [("execution: {default_timeout: V}", "31536000"), ("monitoring: {check_interval: V}", "86400")],
)
def test_config_durations_are_bounded_too(tmp_path: Path, section: str, limit: str) -> None:
    path = tmp_path / "wfa.yaml"
    path.write_text(section.replace("V", "1.0e+10") + "\n")
    with pytest.raises(ValidationError) as excinfo:
        load_config(path, env={})
    assert limit in str(excinfo.value)


def test_a_retry_delay_is_never_nan_or_beyond_max_delay() -> None:
    """0 * inf is nan: a policy built in Python without validation still gets a number."""
    policy = RetrySpec(initial_delay=0.0, backoff=math.inf, max_delay=30.0)
    assert retry_delay(policy, 3) == 30.0
    assert retry_delay(RetrySpec(initial_delay=1.0, backoff=1e300, max_delay=5.0), 400) == 5.0


def test_a_time_beyond_any_calendar_still_prints() -> None:
    """A log written before durations were bounded may hold an infinite deadline."""
    assert iso(math.inf) == "never"
    assert iso(0.0) == "1970-01-01T00:00:00.000Z"
