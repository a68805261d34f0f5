"""One timer service for every retry delay, attempt timeout and run timeout.

Timers are not the truth: the events that scheduled them are (`RetryScheduled`,
`AttemptStarted.timeout_at`, `RunStarted.deadline`). After a restart the
workflow actors re-arm them from state, so a timer lost with the process is
never lost for the run. One thread and a heap, not a thread per timer.

The thread must outlive anything it is given, since every run of the engine
depends on it: it never sleeps longer than `MAX_SLEEP` at a time (a timer a
century away is simply looked at again), a time that is not a number never
fires, and a recipient whose `tell` raises (an actor already stopped) is
logged and skipped.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections.abc import Hashable
from typing import Any, Protocol

from actors.clock import MAX_SLEEP, SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

__all__ = ["MAX_SLEEP", "Recipient", "TimerService"]


class Recipient(Protocol):
    def tell(self, message: Any) -> None: ...


class TimerService:
    """Deliver `message` to `recipient` (a pykka ActorRef) at unix time `at`.

    `schedule` and `cancel` may be called from any thread and never block on
    delivery; delivery happens on the service's own thread, through `tell`.
    Re-scheduling a key replaces its timer. Times are read from `clock`
    (actors/clock.py), so a fake clock makes a timer a day away fire at once.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Hashable]] = []
        """Every timer scheduled, cancelled ones too (they are skipped when due)."""
        self._live: dict[Hashable, tuple[int, Recipient, Any]] = {}
        self._groups: dict[Hashable, set[Hashable]] = {}
        """Live tuple keys by their first element (a run id), for `cancel_group`."""
        self._seq = itertools.count()
        self._delivering = 0  # timers taken off the heap and not yet told
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="wfa-timers", daemon=True)
        self._thread.start()

    def schedule(self, key: Hashable, at: float, recipient: Recipient, message: Any) -> None:
        if math.isnan(at):  # would break the heap's order; no clock ever reaches it
            log.warning("timer %r has no valid time (NaN): it will not fire", key)
            at = math.inf
        with self._wake:
            seq = next(self._seq)
            self._live[key] = (seq, recipient, message)
            if isinstance(key, tuple):
                self._groups.setdefault(key[0], set()).add(key)
            earliest = not self._heap or at < self._heap[0][0]
            heapq.heappush(self._heap, (at, seq, key))
            if earliest:  # the thread sleeps until the earliest timer: only then wake it
                self._wake.notify()

    def cancel(self, key: Hashable) -> None:
        with self._wake:
            self._forget(key)

    def cancel_group(self, group: Hashable) -> None:
        """Cancel every timer whose tuple key starts with `group` (e.g. one run's id)."""
        with self._wake:
            for key in self._groups.pop(group, ()):
                self._live.pop(key, None)

    def _forget(self, key: Hashable) -> None:
        """Drop a live timer (under the lock)."""
        if self._live.pop(key, None) is not None and isinstance(key, tuple):
            group = self._groups.get(key[0])
            if group is not None:
                group.discard(key)
                if not group:
                    del self._groups[key[0]]

    def pending(self) -> int:
        with self._wake:
            return len(self._live)

    def next_at(self) -> float | None:
        """When the earliest live timer is due; None if there is none, or while timers
        already due are still being delivered (nothing may skip past their effects)."""
        with self._wake:
            at = self._earliest()
            return None if self._delivering or at == math.inf else at

    def _earliest(self) -> float:
        """When the earliest live timer is due, inf if none (under the lock); drops the
        cancelled and replaced timers on top of the heap, so a clock is never asked to
        wait for a time nobody waits for."""
        while self._heap:
            at, seq, key = self._heap[0]
            live = self._live.get(key)
            if live is not None and live[0] == seq:
                return at
            heapq.heappop(self._heap)
        return math.inf

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._live.clear()
            self._groups.clear()
            self._wake.notify()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            due: list[tuple[Recipient, Any]] = []
            with self._wake:
                if self._stopped:
                    return
                now = self._clock.now()
                while self._heap and self._heap[0][0] <= now:
                    _, seq, key = heapq.heappop(self._heap)
                    live = self._live.get(key)
                    if live is not None and live[0] == seq:
                        self._forget(key)
                        due.append((live[1], live[2]))
                if not due:
                    self._clock.wait(self._wake, self._earliest())
                    continue
                self._delivering = len(due)
            for recipient, message in due:
                try:
                    recipient.tell(message)
                except Exception:  # e.g. pykka's ActorDeadError: the others must still fire
                    log.exception("a timer could not be delivered: %r", message)
            with self._wake:
                self._delivering = 0
