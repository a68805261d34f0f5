"""Trigger rules: what a step does once every dependency is terminal.

Skips propagate because a skipped dependency is not a success: under the
default `all_success` a skipped parent skips its children, and so on down.
A step an operator skipped with stand-in outputs counts as succeeded, which is
the point of `wfa skip --outputs`. A cancelled dependency counts as failed.
"""

from __future__ import annotations

from enum import Enum
from typing import assert_never

from engine.rules.spec import TriggerRule


class Outcome(Enum):
    """A terminal dependency as trigger rules see it."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class Gate(Enum):
    RUN = "run"
    SKIP = "skip"


def trigger_gate(rule: TriggerRule, succeeded: int, failed: int, skipped: int) -> Gate:
    """Apply `rule` to the counts of terminal dependency outcomes."""
    total = succeeded + failed + skipped
    match rule:
        case TriggerRule.ALL_SUCCESS:
            ok = succeeded == total
        case TriggerRule.ALL_DONE:
            ok = True
        case TriggerRule.ANY_SUCCESS:
            ok = succeeded > 0 or total == 0
        case TriggerRule.NONE_FAILED:
            ok = failed == 0
        case _:
            assert_never(rule)
    return Gate.RUN if ok else Gate.SKIP


def skip_reason(rule: TriggerRule, succeeded: int, failed: int, skipped: int) -> str:
    """Why `rule` skipped the step, for StepSkipped.reason."""
    return (
        f"trigger rule {rule.value} not met: {succeeded} dependencies succeeded, "
        f"{failed} failed, {skipped} skipped"
    )
