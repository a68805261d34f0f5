"""Rate limits: the token bucket, folded from recorded takes, never lets more than `max`
attempts start in any `per` seconds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.rules.policies.rate_limits import TokenBucket, fold_buckets, limit_name


def test_a_full_bucket_gives_max_tokens_then_refuses_until_the_oldest_comes_back() -> None:
    bucket = TokenBucket(2, 60.0)
    first = bucket.take(0.0)
    assert first is not None
    second = first.take(1.0)
    assert second is not None
    assert second.take(2.0) is None
    assert second.next_token_at(2.0) == 60.0
    assert second.take(60.0) is not None  # the take at 0 came back exactly `per` later


def test_a_bucket_with_a_token_says_now() -> None:
    assert TokenBucket(1, 5.0).next_token_at(3.0) == 3.0


def test_a_restart_rebuilds_the_buckets_from_the_recorded_takes() -> None:
    buckets = fold_buckets([("api", 0.0, 2, 60.0), ("w.s", 1.0, 1, 5.0), ("api", 2.0, 2, 60.0)])
    assert buckets["api"].take(3.0) is None
    assert buckets["api"].next_token_at(3.0) == 60.0
    assert buckets["w.s"].take(6.0) is not None


def test_a_step_limit_and_a_capability_limit_have_different_names() -> None:
    assert limit_name("deploy", "api") == "deploy.api"
    assert limit_name("deploy", capability="api") == "api"


@given(
    max_=st.integers(1, 5),
    per=st.sampled_from([0.5, 1.0, 7.0]),
    asks=st.lists(st.floats(0, 3, allow_nan=False), max_size=60),
    restarts=st.sets(st.integers(0, 59)),
    rewrites=st.sets(st.integers(0, 59)),
)
def test_no_window_of_per_seconds_sees_more_than_max_starts_across_restarts(
    max_: int, per: float, asks: list[float], restarts: set[int], rewrites: set[int]
) -> None:
    """Attempts ask at increasing times; at a restart the bucket is rebuilt from the log of
    takes alone, and at a rewrite the log is cut to the takes still out. Every take is
    granted only while fewer than `max` lie within `per`, and a refused ask is told
    exactly when the next token comes back."""
    now, bucket, log, starts = 0.0, TokenBucket(max_, per), [], []
    for i, gap in enumerate(asks):
        now += gap
        if i in rewrites:
            log = [("api", t, max_, per) for t in bucket.live(now)]
        if i in restarts:
            bucket = fold_buckets(log).get("api", TokenBucket(max_, per))
        after = bucket.take(now)
        if after is None:
            at = bucket.next_token_at(now)
            assert at > now
            assert bucket.take(at) is not None
        else:
            bucket = after
            log.append(("api", now, max_, per))
            starts.append(now)
    for t in starts:
        assert sum(1 for u in starts if t <= u < t + per) <= max_  # as the bucket adds


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["api", "w.s"]),
            st.floats(0, 100, allow_nan=False),
            st.integers(1, 4),
            st.sampled_from([1.0, 60.0]),
        ),
        max_size=40,
    )
)
def test_folding_keeps_each_buckets_last_max_takes_as_max_was_at_each_take(
    takes: list[tuple[str, float, int, float]],
) -> None:
    """The fold is the bucket of each name after its takes in order, each cut to the
    `max` of its own take, and the last take's limits."""
    want: dict[str, TokenBucket] = {}
    for name, at, max_, per in takes:
        before = want[name].taken if name in want else ()
        want[name] = TokenBucket(max_, per, (*before, at)[-max_:])
    assert fold_buckets(takes) == want
