"""The timer service delivers each live timer once, at or after its time, in time order."""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any

import pytest

from actors.timers import TimerService


class Inbox:
    def __init__(self) -> None:
        self.received: queue.Queue[tuple[float, Any]] = queue.Queue()

    def tell(self, message: Any) -> None:
        self.received.put((time.time(), message))


def test_timers_fire_in_time_order_not_in_scheduling_order() -> None:
    timers, inbox = TimerService(), Inbox()
    now = time.time()
    timers.schedule("late", now + 0.15, inbox, "late")
    timers.schedule("early", now + 0.05, inbox, "early")
    first = inbox.received.get(timeout=2)
    second = inbox.received.get(timeout=2)
    timers.stop()
    assert [first[1], second[1]] == ["early", "late"]
    assert first[0] >= now + 0.05 and second[0] >= now + 0.15


def test_a_cancelled_timer_never_fires() -> None:
    timers, inbox = TimerService(), Inbox()
    timers.schedule(("run-1", "a"), time.time() + 0.05, inbox, "cancelled")
    timers.schedule(("run-2", "a"), time.time() + 0.1, inbox, "kept")
    timers.cancel_group("run-1")
    assert inbox.received.get(timeout=2)[1] == "kept"
    timers.stop()
    assert inbox.received.empty()


def test_rescheduling_a_key_replaces_the_earlier_timer() -> None:
    timers, inbox = TimerService(), Inbox()
    timers.schedule("k", time.time() + 0.05, inbox, "first")
    timers.schedule("k", time.time() + 0.1, inbox, "second")
    assert inbox.received.get(timeout=2)[1] == "second"
    time.sleep(0.1)
    timers.stop()
    assert inbox.received.empty()


def test_a_timer_in_the_past_fires_at_once_and_stop_ends_the_thread() -> None:
    timers, inbox = TimerService(), Inbox()
    timers.schedule("k", time.time() - 10, inbox, "overdue")
    assert inbox.received.get(timeout=2)[1] == "overdue"
    before = threading.active_count()
    timers.stop()
    assert threading.active_count() == before - 1


def test_a_timer_later_than_the_earliest_fires_after_it() -> None:
    """Only an earlier timer wakes the thread; a later one is found when it wakes."""
    timers, inbox = TimerService(), Inbox()
    now = time.time()
    timers.schedule("early", now + 0.05, inbox, "early")
    timers.schedule("late", now + 0.1, inbox, "late")
    timers.schedule("later", now + 0.15, inbox, "later")
    got = [inbox.received.get(timeout=2) for _ in range(3)]
    timers.stop()
    assert [m for _, m in got] == ["early", "late", "later"]
    assert got[2][0] >= now + 0.15


def test_cancelling_a_group_spares_other_groups_and_forgets_fired_timers() -> None:
    timers, inbox = TimerService(), Inbox()
    timers.schedule(("run-1", "a"), time.time() - 1, inbox, "fired")
    assert inbox.received.get(timeout=2)[1] == "fired"
    timers.schedule(("run-1", "b"), time.time() + 0.05, inbox, "cancelled")
    timers.schedule(("run-1", "c"), time.time() + 0.05, inbox, "cancelled too")
    timers.cancel(("run-1", "c"))
    timers.schedule(("run-2", "a"), time.time() + 0.1, inbox, "kept")
    timers.cancel_group("run-1")
    assert timers.pending() == 1
    assert inbox.received.get(timeout=2)[1] == "kept"
    assert timers.pending() == 0
    timers.stop()
    assert inbox.received.empty()


@pytest.mark.parametrize("delay", [10_000_000_000.0, 1e300, math.inf, -math.inf, math.nan])
def test_an_absurd_time_never_stops_the_other_timers(delay: float) -> None:
    """A delay that no clock can wait for must not end the service's thread."""
    timers, inbox, at = TimerService(), Inbox(), time.time() + delay
    timers.schedule("absurd", at, inbox, "absurd")
    timers.schedule("soon", time.time() + 0.05, inbox, "soon")
    received = {inbox.received.get(timeout=2)[1] for _ in range(2 if at < 0 else 1)}
    timers.schedule("later", time.time() + 0.05, inbox, "later")
    received.add(inbox.received.get(timeout=2)[1])
    timers.stop()
    assert received == {"soon", "later"} | ({"absurd"} if at < 0 else set())


def test_a_recipient_that_raises_never_stops_the_other_timers() -> None:
    """A stopped actor's `tell` raises (pykka's ActorDeadError): the next timers still fire."""

    class Dead:
        def tell(self, message: Any) -> None:
            raise RuntimeError("actor is dead")

    timers, inbox = TimerService(), Inbox()
    timers.schedule("dead", time.time(), Dead(), "lost")
    timers.schedule("alive", time.time() + 0.05, inbox, "kept")
    assert inbox.received.get(timeout=2)[1] == "kept"
    timers.stop()


def test_on_a_fake_clock_a_timer_fires_when_the_clock_is_advanced_past_it() -> None:
    from engine.testing import FakeClock

    clock = FakeClock(start=1000.0)
    timers, inbox = TimerService(clock), Inbox()
    timers.schedule("day", 1000.0 + 86400, inbox, "a day later")
    assert timers.next_at() == 1000.0 + 86400
    clock.advance(86399)
    with pytest.raises(queue.Empty):
        inbox.received.get(timeout=0.2)
    clock.advance(1)
    assert inbox.received.get(timeout=5)[1] == "a day later"
    assert timers.next_at() is None
    timers.stop()


def test_next_at_skips_cancelled_and_replaced_timers() -> None:
    timers, inbox = TimerService(), Inbox()
    now = time.time()
    timers.schedule("gone", now + 100, inbox, "cancelled")
    timers.schedule("moved", now + 200, inbox, "first time")
    timers.schedule("moved", now + 400, inbox, "replaced")
    timers.schedule("kept", now + 300, inbox, "kept")
    timers.cancel("gone")
    assert timers.next_at() == now + 300
    timers.stop()
