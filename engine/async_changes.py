"""Wakes coroutines when the log moves, so `await handle.wait_async()` holds no thread.

The engine's follower thread calls `notify()` after each batch it reads (as it
wakes the threads blocked in `wait()`); each waiting coroutine registered a
future on its own loop, resolved there through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["AsyncChanges"]


class AsyncChanges:
    """Futures of coroutines waiting for the next change; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: set[asyncio.Future[None]] = set()

    def next_change(self) -> asyncio.Future[None]:
        """A future of the running loop, done at the next `notify()`. Call on that loop."""
        future = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting.add(future)
        return future

    def forget(self, future: asyncio.Future[None]) -> None:
        """Stop waking `future` (its waiter gave up: a timeout or a cancelled task)."""
        with self._lock:
            self._waiting.discard(future)

    def notify(self) -> None:
        """Resolve every waiting future on its own loop. Runs in the follower thread."""
        with self._lock:
            waiting, self._waiting = self._waiting, set()
        for future in waiting:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits
                future.get_loop().call_soon_threadsafe(_resolve, future)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
