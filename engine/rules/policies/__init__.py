"""Pure decision rules, one module per policy: retry backoff, triggers, timeouts,
conditions, schedules, allocation, health, caching, estimates, resources, alerts.

Each is a function over plain data with time as a value, so the state machine
(engine/rules/decide.py) stays a composition of small rules that are tested alone.
"""

from __future__ import annotations

from engine.rules.policies.retry import RetryDecision, max_attempts, next_retry_at, retry_decision
from engine.rules.policies.triggers import Gate, Outcome, trigger_gate

__all__ = [
    "Gate",
    "Outcome",
    "RetryDecision",
    "max_attempts",
    "next_retry_at",
    "retry_decision",
    "trigger_gate",
]
