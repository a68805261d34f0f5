"""RateLimiter: the live token buckets of every rate limit, shared by all runs.

The pure bucket is engine/policies/rate_limits.py. This is its durable side:
each token taken is appended to the "rate-limits" stream (one
`RateLimitTokenTaken`) before the pool grants the slot, so the take is in the
log before the attempt's `AttemptStarted` and its start; on start the engine
folds the stream's tail (`from_log`), so a restart does not refill a bucket.
A take whose append fails is not granted: the step waits and asks again.

Thread use: `refused` and `take` are called under the pool's lock (the take's
append is one small LMDB commit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import msgspec

from engine.rules.events import Event, RateLimitTokenTaken
from engine.rules.policies.rate_limits import TokenBucket, fold_buckets, limit_name
from engine.rules.spec import RateLimitSpec

log = logging.getLogger(__name__)

RATE_LIMITS_STREAM = "rate-limits"
TAIL = 100_000
"""How many of the stream's last takes the engine reads on start: a bucket needs only
its last `max` takes, and limits are at most 1000000 (so a larger one holds exactly
only while its takes are among these)."""


class RateLimit(msgspec.Struct, frozen=True):
    """One limit an attempt is under: "api" (a capability's) or "w.api" (step api's of w)."""

    name: str
    max: int
    per: float


class RateLimiter:
    def __init__(
        self,
        buckets: dict[str, TokenBucket] | None = None,
        append: Callable[[list[Event]], None] | None = None,
    ) -> None:
        self._buckets = dict(buckets or {})
        self._append = append

    @classmethod
    def from_log(
        cls, takes: Sequence[RateLimitTokenTaken], append: Callable[[list[Event]], None]
    ) -> RateLimiter:
        return cls(fold_buckets((t.name, t.at, t.max, t.per) for t in takes), append)

    def _bucket(self, limit: RateLimit) -> TokenBucket:
        old = self._buckets.get(limit.name)
        return (
            TokenBucket(limit.max, limit.per)
            if old is None
            else old.with_limits(limit.max, limit.per)
        )

    def refused(self, limits: Sequence[RateLimit], now: float) -> tuple[RateLimit, float] | None:
        """The first limit without a token now and when it has one, or None: all have."""
        for limit in limits:
            at = self._bucket(limit).next_token_at(now)
            if at > now:
                return limit, at
        return None

    def take(self, limits: Sequence[RateLimit], run_id: str, step_id: str, now: float) -> bool:
        """Take a token of each limit (all have one: `refused` said so), durably first."""
        if not limits:
            return True
        taken = {}
        for limit in limits:
            bucket = self._bucket(limit).take(now)
            if bucket is None:
                return False
            taken[limit.name] = bucket
        if self._append is not None:
            events: list[Event] = [
                RateLimitTokenTaken(
                    at=now, name=lim.name, max=lim.max, per=lim.per, run_id=run_id, step_id=step_id
                )
                for lim in limits
            ]
            try:
                self._append(events)
            except Exception:
                log.exception("cannot record a rate-limit token for %s/%s", run_id, step_id)
                return False
        self._buckets.update(taken)
        return True


def limits_of(
    workflow: str,
    step_id: str,
    step_limit: RateLimitSpec | None,
    capability: str,
    capabilities: Mapping[str, RateLimitSpec],
) -> tuple[RateLimit, ...]:
    """The limits an attempt of a step is under: its capability's, then its own."""
    found = []
    if capability in capabilities:
        spec = capabilities[capability]
        found.append(RateLimit(limit_name(workflow, capability=capability), spec.max, spec.per))
    if step_limit is not None:
        name = limit_name(workflow, step_id)
        found.append(RateLimit(name, step_limit.max, step_limit.per))
    return tuple(found)
