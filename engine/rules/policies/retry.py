"""Retry by error kind with exponential backoff; the delay is data (retry at T).

A step without a `retry:` section gets `RetrySpec()` with `max_attempts` taken
from the run's captured `default_retry_count` (retries after the first
attempt), so a run retries the same way when it is replayed next year.
"""

from __future__ import annotations

from enum import Enum

from engine.rules.errors import ErrorKind
from engine.rules.spec import RetrySpec

DEFAULT_POLICY = RetrySpec()

# Failures that say "this agent is the problem": the next attempt moves to a fallback agent.
AGENT_FAILURES = frozenset({ErrorKind.AGENT, ErrorKind.NETWORK, ErrorKind.TIMEOUT})


class RetryDecision(Enum):
    RETRY = "retry"
    GIVE_UP = "give_up"  # retries exhausted
    NOT_RETRYABLE = "not_retryable"  # the kind is not in the policy's `on`


def max_attempts(policy: RetrySpec | None, default_retry_count: int) -> int:
    """Attempts allowed in total (first attempt included)."""
    if policy is not None and policy.max_attempts is not None:
        return policy.max_attempts
    return default_retry_count + 1


def retry_decision(
    policy: RetrySpec | None, default_retry_count: int, kind: ErrorKind, attempts_used: int
) -> RetryDecision:
    """Whether a failure of `kind`, after `attempts_used` attempts, earns another attempt."""
    if kind not in (policy or DEFAULT_POLICY).on:
        return RetryDecision.NOT_RETRYABLE
    if attempts_used >= max_attempts(policy, default_retry_count):
        return RetryDecision.GIVE_UP
    return RetryDecision.RETRY


def retry_delay(policy: RetrySpec | None, attempt: int) -> float:
    """Delay after failed attempt `attempt` (1-based): initial * backoff^(n-1), capped."""
    p = policy or DEFAULT_POLICY
    exponent = max(attempt - 1, 0)
    try:
        delay = p.initial_delay * p.backoff**exponent
    except OverflowError:
        delay = p.max_delay
    return delay if delay <= p.max_delay else p.max_delay  # also for NaN (0 * inf)


def next_retry_at(policy: RetrySpec | None, attempt: int, now: float) -> float:
    """When the attempt after failed attempt `attempt` may start."""
    return now + retry_delay(policy, attempt)
