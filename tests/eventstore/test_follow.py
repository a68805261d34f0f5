from __future__ import annotations

import threading
import time

from eventstore import EventStore, Recorded
from tests.eventstore.events import Counted, Event


def _collect(
    store: EventStore[Event], stop: threading.Event, out: list[Recorded[Event]], start: int = 1
) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.extend(store.follow(start, stop=stop)))
    thread.start()
    return thread


def test_follow_yields_old_then_new_events_promptly(store: EventStore[Event]) -> None:
    """A follower gets existing events, then each new append within well under 50 ms."""
    store.append("s", [Counted(0)])
    stop = threading.Event()
    seen: list[Recorded[Event]] = []
    thread = _collect(store, stop, seen)
    latencies = []
    for i in range(1, 20):
        sent = time.monotonic()
        store.append("s", [Counted(i)])
        while len(seen) <= i:
            time.sleep(0.0005)
        latencies.append(time.monotonic() - sent)
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()
    assert [r.position for r in seen] == list(range(1, 21))
    assert sorted(latencies)[len(latencies) // 2] < 0.05


def test_follow_starts_at_a_position(store: EventStore[Event]) -> None:
    """follow(from_position) skips earlier events."""
    store.append("s", [Counted(i) for i in range(5)])
    stop = threading.Event()
    seen: list[Recorded[Event]] = []
    thread = _collect(store, stop, seen, start=4)
    deadline = time.monotonic() + 2
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    stop.set()
    thread.join(timeout=2)
    assert [r.position for r in seen] == [4, 5]


def test_follow_ends_when_the_store_closes(store: EventStore[Event]) -> None:
    """Closing the store ends a waiting follower."""
    seen: list[Recorded[Event]] = []
    thread = _collect(store, threading.Event(), seen)
    time.sleep(0.05)
    store.close()
    thread.join(timeout=2)
    assert not thread.is_alive() and seen == []


def test_an_idle_follower_does_not_burn_a_core(store: EventStore[Event]) -> None:
    """Waiting for events costs a small fraction of one CPU."""
    stop = threading.Event()
    thread = _collect(store, stop, [])
    start_cpu, start = time.process_time(), time.monotonic()
    time.sleep(0.5)
    used = (time.process_time() - start_cpu) / (time.monotonic() - start)
    stop.set()
    thread.join(timeout=2)
    assert used < 0.25


def test_a_gathering_follower_wakes_at_once_then_reads_in_batches(
    store: EventStore[Event],
) -> None:
    """With `gather`, an idle follower still sees a commit at once; after a read it
    waits `gather` before the next, so what is appended meanwhile comes as one batch;
    nothing is lost, and a stop ends it even while it gathers."""
    stop = threading.Event()
    seen: list[tuple[float, int]] = []

    def consume() -> None:
        for rec in store.follow(1, stop=stop, gather=2.0):
            seen.append((time.monotonic(), rec.position))

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.05)  # idle now
    sent = time.monotonic()
    store.append("s", [Counted(0)])
    while not seen:
        time.sleep(0.001)
    assert seen[0][0] - sent < 1.0  # at once, not after the gather
    for i in range(1, 4):
        store.append("s", [Counted(i)])
    while len(seen) < 4:
        time.sleep(0.001)
    assert seen[1][0] - seen[0][0] >= 2.0  # read only after gathering
    assert [p for _, p in seen] == [1, 2, 3, 4]
    stopped = time.monotonic()
    stop.set()  # it is gathering again now
    thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - stopped < 1.5
