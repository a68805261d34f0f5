"""The one clock the engine reads for timers and for the times it records.

Every time that lands in the log (event `at`s, retry times, attempt and run
deadlines, sleeps, signal timeouts) and every timer the `TimerService` fires
is read from a `Clock`, so a test can swap in `engine.testing.FakeClock` and
see a week pass in a moment. The boundary: waits on real I/O stay on the wall
clock, because a fake clock cannot make a process or a socket faster. These
are an attempt's own kill deadline inside its agent (`timeout` of a process
group, a thread or a Dask future), the measured duration of an attempt
(`started_at`/`ended_at` of its outcome, which feeds predictive allocation),
connection retries to a cluster, `RunHandle.wait(timeout)` (the caller's real
patience) and the lock and log waits of the data directory.
"""

from __future__ import annotations

import threading
import time
from typing import Final, Protocol

MAX_SLEEP: Final = 60.0
"""Longest the timer thread waits at once, in seconds: below any platform's wait limit."""


class Clock(Protocol):
    """Unix time in seconds, and a way to sleep until a time of this clock."""

    def now(self) -> float: ...

    def wait(self, wake: threading.Condition, at: float) -> None:
        """With `wake` held: return at `at` on this clock, on `wake.notify()`, or sooner."""


class SystemClock:
    """The wall clock: `time.time()`."""

    def now(self) -> float:
        return time.time()

    def wait(self, wake: threading.Condition, at: float) -> None:
        wake.wait(timeout=max(0.0, min(at - time.time(), MAX_SLEEP)))


SYSTEM_CLOCK: Final = SystemClock()
