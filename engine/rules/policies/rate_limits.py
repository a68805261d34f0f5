"""Rate limits: attempts under one limit start at most `max` times in any `per` seconds.

A token bucket of `max` tokens in which each token taken comes back exactly
`per` seconds later (a sliding window): so "max 10 per 60" means no 60-second
window ever sees more than 10 starts, across all runs. The bucket's whole
state is the times its tokens were taken within the last `per` seconds. The
engine records each take as a `RateLimitTokenTaken` event in the "rate-limits"
stream before the attempt starts (persist, then act) and rebuilds its buckets
from that stream on start (`fold_buckets`), so a restart does not refill them.
A take older than `per` seconds no longer counts, so the stream can be written
afresh with only the takes still out (`live`) without changing any bucket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import msgspec

__all__ = ["TokenBucket", "fold_buckets", "limit_name"]


class TokenBucket(msgspec.Struct, frozen=True):
    max: int
    per: float
    taken: tuple[float, ...] = ()  # times of the takes still out, oldest first

    def live(self, now: float) -> tuple[float, ...]:
        """The takes still out at `now`: all of the bucket's state that matters from then."""
        return tuple(t for t in self.taken if t + self.per > now)  # as next_token_at adds

    def take(self, now: float) -> TokenBucket | None:
        """The bucket after taking a token at `now`, or None if none is left."""
        live = self.live(now)
        if len(live) >= self.max:
            return None
        return TokenBucket(self.max, self.per, (*live, now))

    def next_token_at(self, now: float) -> float:
        """When a token is free: `now` if one is, else when the oldest take comes back."""
        live = self.live(now)
        if len(live) < self.max:
            return now
        return live[len(live) - self.max] + self.per

    def with_limits(self, max_: int, per: float) -> TokenBucket:
        """The same takes under a (possibly changed) limit, e.g. from an edited file."""
        return TokenBucket(max_, per, self.taken)


def limit_name(workflow: str, step_id: str | None = None, capability: str | None = None) -> str:
    """The name a limit is shown and stored under: "api" for capability api's, "deploy.api"
    for step api's of workflow deploy (never the same: a capability name has no dot)."""
    return capability if capability is not None else f"{workflow}.{step_id}"


def fold_buckets(takes: Iterable[tuple[str, float, int, float]]) -> dict[str, TokenBucket]:
    """Buckets from recorded takes (name, at, max, per), in log order; the last take's
    limits are the bucket's limits until the engine knows better. Each bucket keeps its
    last `max` takes (as `max` was at each take), in time linear in the takes."""
    folded: dict[str, tuple[int, float, deque[float]]] = {}
    for name, at, max_, per in takes:
        old = folded.get(name)
        times = old[2] if old is not None else deque(maxlen=max_)
        if times.maxlen != max_:
            times = deque(times, maxlen=max_)  # keeps the last `max_`
        times.append(at)
        folded[name] = (max_, per, times)
    return {name: TokenBucket(m, per, tuple(times)) for name, (m, per, times) in folded.items()}
