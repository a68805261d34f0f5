"""RateLimiter: the live token buckets of every rate limit, shared by all runs.

The pure bucket is engine/rules/policies/rate_limits.py. This is its durable
side: each token taken is appended to the "rate-limits" stream (one
`RateLimitTokenTaken`) before the pool grants the slot, so the take is in the
log before the attempt's `AttemptStarted` and its start; on start the engine
folds the stream (`recorded_in`), so a restart does not refill a bucket.
A take whose append fails is not granted: the step waits and asks again.

The stream is kept short: once it has grown by `REWRITE_AT` events, the take
that would append more writes it afresh instead (`replace_stream`, one
transaction): a `RateLimitTakesCarried` per bucket with the takes still out,
then the new take. A take older than its limit's `per` no longer counts, so no
bucket changes, and an engine that starts reads a few thousand events, not a
year of takes. (A limit whose `per` is raised later does not see the takes
dropped before under the smaller one.)

Thread use: `refused` and `take` are called under the pool's lock (the take's
append is one small LMDB commit; a rewrite, one per `REWRITE_AT` takes, removes
those takes in the same commit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence

import msgspec

from engine.rules.events import Event, RateLimitTakesCarried, RateLimitTokenTaken
from engine.rules.policies.rate_limits import TokenBucket, fold_buckets, limit_name
from engine.rules.spec import RateLimitSpec
from eventstore import EventLog

log = logging.getLogger(__name__)

RATE_LIMITS_STREAM = "rate-limits"
REWRITE_AT = 10_000
"""Events the stream may grow by before it is written afresh with only the takes still out."""
CARRIED_PER_EVENT = 10_000
"""Take times per `RateLimitTakesCarried` (about 90 kB, well under the store's event limit)."""
TAIL = 100_000
"""How many of the stream's last events the engine reads on start. The stream stays
shorter than this (`REWRITE_AT` and what is carried), but a log written before it was
rewritten may be longer: a bucket needs only its last `max` takes, and limits are at
most 1000000 (so a larger one holds exactly only while its takes are among these)."""


class RateLimit(msgspec.Struct, frozen=True):
    """One limit an attempt is under: "api" (a capability's) or "w.api" (step api's of w)."""

    name: str
    max: int
    per: float


class RateLimiter:
    """The buckets, and the stream they are recorded in (none: in memory only)."""

    def __init__(
        self,
        buckets: dict[str, TokenBucket] | None = None,
        store: EventLog[Event] | None = None,
        rewrite_at: int = REWRITE_AT,
    ) -> None:
        self._buckets = dict(buckets or {})
        self._store = store
        self._rewrite_at = rewrite_at
        self._length = 0 if store is None else store.stream_version(RATE_LIMITS_STREAM)
        self._rewritten = 0  # the stream's length when last written afresh (0: not by us)

    @classmethod
    def recorded_in(cls, store: EventLog[Event], rewrite_at: int = REWRITE_AT) -> RateLimiter:
        """The buckets as the "rate-limits" stream of `store` left them; takes go there."""
        version = store.stream_version(RATE_LIMITS_STREAM)
        tail = store.read_stream(RATE_LIMITS_STREAM, max(1, version - TAIL + 1))
        return cls(fold_buckets(_takes(r.event for r in tail)), store, rewrite_at)

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
        if self._store is not None:
            events: list[Event] = [
                RateLimitTokenTaken(
                    at=now, name=lim.name, max=lim.max, per=lim.per, run_id=run_id, step_id=step_id
                )
                for lim in limits
            ]
            try:
                self._record(events, now)
            except Exception:
                log.exception("cannot record a rate-limit token for %s/%s", run_id, step_id)
                return False
        self._buckets.update(taken)
        return True

    def _record(self, events: list[Event], now: float) -> None:
        """Append `events`, or write the stream afresh: the takes still out, then them."""
        assert self._store is not None
        if self._length + len(events) - self._rewritten <= self._rewrite_at:
            self._store.append(RATE_LIMITS_STREAM, events)
            self._length += len(events)
            return
        fresh = [*self._carried(now), *events]
        self._store.replace_stream(RATE_LIMITS_STREAM, fresh)
        self._length = self._rewritten = len(fresh)

    def _carried(self, now: float) -> Iterator[Event]:
        for name, bucket in self._buckets.items():
            live = bucket.live(now)
            for i in range(0, len(live), CARRIED_PER_EVENT):
                yield RateLimitTakesCarried(
                    at=now,
                    name=name,
                    max=bucket.max,
                    per=bucket.per,
                    taken=live[i : i + CARRIED_PER_EVENT],
                )


def _takes(events: Iterable[Event]) -> Iterator[tuple[str, float, int, float]]:
    """(name, at, max, per) of each take the events record, in log order."""
    for event in events:
        if isinstance(event, RateLimitTokenTaken):
            yield event.name, event.at, event.max, event.per
        elif isinstance(event, RateLimitTakesCarried):
            for at in event.taken:
                yield event.name, at, event.max, event.per


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
