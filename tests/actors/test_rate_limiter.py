"""The rate limiter's durable side, on a real event store: every take is in the
"rate-limits" stream before it is granted, the stream is written afresh with only the
takes still out once it has grown, and an engine that starts from the stream, before
or after a rewrite, has the very buckets the running one had."""

from __future__ import annotations

import pathlib
import shutil
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import rate_limiter
from actors.rate_limiter import RATE_LIMITS_STREAM, RateLimit, RateLimiter
from engine.rules.events import Event, RateLimitTakesCarried, RateLimitTokenTaken
from eventstore import EventStore, check_store

API = RateLimit("api", 3, 5.0)
STEP = RateLimit("w.s", 2, 1.0)


def ask(limiter: RateLimiter, limits: tuple[RateLimit, ...], now: float) -> bool:
    """What the pool does: take a token of each limit if every one has one now."""
    return limiter.refused(limits, now) is None and limiter.take(limits, "r", "s", now)


@settings(max_examples=60, deadline=None)
@given(
    asks=st.lists(
        st.tuples(
            st.floats(0, 2, allow_nan=False), st.sampled_from([(API,), (STEP,), (API, STEP)])
        ),
        max_size=50,
    ),
    restarts=st.sets(st.integers(0, 49)),
    rewrite_at=st.integers(1, 6),
)
def test_a_restart_finds_the_buckets_the_running_engine_had_however_often_rewritten(
    asks: list[tuple[float, tuple[RateLimit, ...]]], restarts: set[int], rewrite_at: int
) -> None:
    directory = tempfile.mkdtemp(prefix="rate-limiter-")
    store: EventStore[Event] = EventStore.open(directory + "/s", Event, durability="relaxed")
    try:
        limiter = RateLimiter.recorded_in(store, rewrite_at)
        now, starts = 0.0, {API.name: [], STEP.name: []}
        for i, (gap, limits) in enumerate(asks):
            now += gap
            if i in restarts:
                limiter = RateLimiter.recorded_in(store, rewrite_at)
            if ask(limiter, limits, now):
                for limit in limits:
                    starts[limit.name].append(now)
            again = RateLimiter.recorded_in(store, rewrite_at)
            for probe in ((API,), (STEP,)):
                assert again.refused(probe, now) == limiter.refused(probe, now)
            # Bounded by the rewrites: what a rewrite carries (a bucket each) and grows by.
            assert store.stream_version(RATE_LIMITS_STREAM) <= rewrite_at + 4
        for limit in (API, STEP):
            times = starts[limit.name]
            for t in times:
                assert sum(1 for u in times if t <= u < t + limit.per) <= limit.max
        store.close()
        assert check_store(directory + "/s", Event).sound
    finally:
        store.close()
        shutil.rmtree(directory)


def test_a_rewrite_carries_each_buckets_takes_still_out_in_bounded_events(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limiter, "CARRIED_PER_EVENT", 2)
    wide = RateLimit("api", 5, 100.0)
    with EventStore.open(tmp_path / "s", Event) as store:
        limiter = RateLimiter.recorded_in(store, rewrite_at=4)
        assert ask(limiter, (STEP,), 0.0)  # out again by 4.0: not carried
        for at in (1.0, 2.0, 3.0, 4.0):
            assert ask(limiter, (wide,), at)
        assert store.stream_version(RATE_LIMITS_STREAM) == 3  # the 5th take rewrote it
        events = [r.event for r in store.read_stream(RATE_LIMITS_STREAM)]
        assert [type(e) for e in events] == [
            RateLimitTakesCarried,
            RateLimitTakesCarried,
            RateLimitTokenTaken,
        ]
        assert [e.taken for e in events[:2]] == [(1.0, 2.0), (3.0,)]
        assert (events[2].name, events[2].at) == ("api", 4.0)
        assert store.removed_positions() == 4
        assert ask(limiter, (wide,), 5.0)
        restarted = RateLimiter.recorded_in(store, rewrite_at=4)
        assert restarted.refused((wide,), 6.0) == (wide, 101.0)
        assert restarted.refused((STEP,), 6.0) is None
