"""Testing a workflow with engine.testing: real engine, skipped time, overridden steps.

Run with `python -m pytest examples/`; the project's own test suite runs it too.
"""

from __future__ import annotations

import pytest
from order_workflow import orders

from engine import ErrorKind, ValidationError
from engine.rules import events as ev
from engine.testing import Fail, run_workflow

HOUR = 3600.0


def test_an_order_is_invoiced_from_its_typed_quote() -> None:
    result = run_workflow(
        orders, {"sku": "tea", "count": 2}, overrides={"charge": {"receipt": "r-1"}}
    )
    result.assert_succeeded()
    assert result.step_order() == ["quote", "charge", "invoice"]
    assert result.steps["invoice"].outputs == {"line": "tea: 9.00 paid (r-1)"}


def test_a_payment_service_down_for_hours_is_retried_with_backoff() -> None:
    # Two network failures, then the override answers: three hours pass in the log
    # (an hour, then two of backoff), in a moment of real time.
    result = run_workflow(
        orders,
        {"sku": "cake"},
        overrides={"charge": Fail("network", "payment service down", times=2)},
    )
    assert result.status == "failed"  # the third attempt ran the real step: still no service
    failed = result.failed_attempts("charge")
    assert [(f.attempt, f.kind) for f in failed] == [(n, ErrorKind.NETWORK) for n in (1, 2, 3, 4)]
    retries = result.events_of(ev.RetryScheduled)
    assert [r.retry_at - r.at for r in retries] == [HOUR, 2 * HOUR, 4 * HOUR]


def test_a_payment_service_down_for_hours_is_retried_then_given_up() -> None:
    # The README's example, as written there.
    result = run_workflow(orders, {"sku": "tea"}, overrides={"charge": Fail("network", "down")})
    assert result.status == "failed"
    assert result.step_order() == ["quote", "charge"]
    assert [f.kind for f in result.failed_attempts("charge")] == [ErrorKind.NETWORK] * 4
    retries = result.events_of(ev.RetryScheduled)
    assert [r.retry_at - r.at for r in retries] == [3600, 7200, 14400]


def test_a_declined_card_is_not_retried() -> None:
    result = run_workflow(orders, {"sku": "tea"}, overrides={"charge": Fail("user", "declined")})
    assert result.status == "failed"
    assert [(f.step_id, f.kind, f.message) for f in result.failed_attempts()] == [
        ("charge", ErrorKind.USER, "RuntimeError: declined")
    ]
    assert result.steps["invoice"].status != "succeeded"


def test_inputs_are_checked_when_the_run_is_submitted() -> None:
    for overrides in (None, {"charge": {"receipt": "r-1"}}):
        with pytest.raises(ValidationError) as caught:
            run_workflow(orders, {"sku": "tea", "count": "two"}, overrides=overrides)
        assert str(caught.value.problems[0]) == "inputs.count: Expected `int`, got `str`"
