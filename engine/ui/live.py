"""Live updates for the pages: one thread follows the log (the store's `follow`,
woken by commits, never re-reading what it saw) and fans each new record out to the
Server-Sent-Event streams of the open pages, each an asyncio queue.

The thread never blocks on a slow page: a queue that is full drops the page's
stream (its EventSource reconnects and the page reloads what it missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from engine.events import RUN_STREAM_PREFIX
from eventstore import EventStore, Recorded

QUEUE_LIMIT = 10_000
PING = object()  # nothing new for a while: the stream sends a comment to keep alive


class LiveFeed:
    """Follows `store` from its current end in a daemon thread; `subscribe()` gives an
    async iterator of the records appended after it was called."""

    def __init__(self, store: EventStore[Any]) -> None:
        self.store = store
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._queues: dict[asyncio.Queue[Recorded[Any] | None], asyncio.AbstractEventLoop] = {}
        self._thread: threading.Thread | None = None
        self._start = store.last_position() + 1

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="wfa-ui-follow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            for queue, loop in self._queues.items():
                loop.call_soon_threadsafe(queue.put_nowait, None)

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # a closed or damaged store ends the feed
            for rec in self.store.follow(self._start, stop=self._stop, gather=0.005):
                with self._lock:
                    targets = list(self._queues.items())
                for queue, loop in targets:
                    loop.call_soon_threadsafe(_offer, queue, rec)

    @contextlib.contextmanager
    def subscribe(self, ping_after: float = 15.0) -> Iterator[AsyncIterator[Any]]:
        """Records committed from now on, PING after `ping_after` quiet seconds, and
        None (then the end) when the feed stopped or this page fell behind.
        Registered at once, so nothing committed after the call is missed."""
        self.start()
        queue: asyncio.Queue[Recorded[Any] | None] = asyncio.Queue(QUEUE_LIMIT)
        with self._lock:
            self._queues[queue] = asyncio.get_running_loop()
        try:
            yield _drain(queue, ping_after)
        finally:
            with self._lock:
                self._queues.pop(queue, None)


async def _drain(
    queue: asyncio.Queue[Recorded[Any] | None], ping_after: float
) -> AsyncIterator[Any]:
    while True:
        try:
            rec = await asyncio.wait_for(queue.get(), ping_after)
        except TimeoutError:
            yield PING
            continue
        yield rec
        if rec is None:
            return


def _offer(queue: asyncio.Queue[Recorded[Any] | None], rec: Recorded[Any]) -> None:
    try:
        queue.put_nowait(rec)
    except asyncio.QueueFull:
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait(None)  # the page reconnects and reloads


def run_of(rec: Recorded[Any]) -> str | None:
    """The run a record belongs to (its stream's, or a command's), if any."""
    if rec.stream.startswith(RUN_STREAM_PREFIX):
        return rec.stream[len(RUN_STREAM_PREFIX) :]
    return getattr(rec.event, "run_id", None)
