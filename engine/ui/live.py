"""Live updates for the pages, over Server-Sent Events: one thread follows the log
(the store's `follow`, woken by commits, never re-reading what it saw) and fans
each new record out to the streams of the open pages, each an asyncio queue.

The thread never blocks on a slow page: a queue that is full drops the page's
stream (its EventSource reconnects and the page reloads what it missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from engine.rules.events import RUN_STREAM_PREFIX, run_stream
from engine.rules.state import InvalidTransition, evolve
from engine.run_index import RUN_LEVEL, summary
from engine.ui import pages
from eventstore import EventStore, Recorded

if TYPE_CHECKING:
    from engine.ui.app import Ui

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


# ---- the streams' endpoints ------------------------------------------------------------


def _sse(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _frames(
    feed: AsyncIterator[Any], frame: Callable[[Recorded[Any]], str | None]
) -> AsyncIterator[str]:
    """`frame(rec)` for each record of `feed` (None: nothing to send), a comment that
    keeps the connection alive on PING, and `reload` when the feed ends."""
    async for rec in feed:
        if rec is PING:
            yield ": ping\n\n"
        elif rec is None:
            yield _sse("reload", {})
            return
        elif (text := frame(rec)) is not None:
            yield text


async def run_live(ui: Ui, request: Request) -> Response:
    """Server-Sent Events: each new event of the run, with the statuses it left."""
    run_id = request.path_params["run_id"]
    stream = run_stream(run_id)
    if ui.store.stream_version(stream) == 0:
        return JSONResponse({"error": f"no run {run_id!r}"}, 404)

    async def events() -> AsyncIterator[str]:
        with ui.feed.subscribe() as feed:  # before the fold: nothing falls between the two
            try:
                state = await asyncio.to_thread(ui.engine.state, run_id)
            except InvalidTransition:  # a damaged run: its page says so, with no stream
                return
            version = ui.store.stream_version(stream)
            yield _sse("hello", {"status": state.status.value})

            def change(rec: Recorded[Any]) -> str | None:
                nonlocal state, version
                if rec.stream != stream or rec.version <= version:
                    return None
                version = rec.version
                try:
                    state = evolve(state, rec.event)
                except InvalidTransition:  # the page reloads, and says why
                    return _sse("reload", {})
                return _sse("event", pages.live_change(state, rec))

            async for text in _frames(feed, change):
                yield text

    return StreamingResponse(events(), media_type="text/event-stream")


async def runs_live(ui: Ui, request: Request) -> Response:
    """Server-Sent Events for the runs page: each run-level change, as its index row."""

    def row_of(rec: Recorded[Any]) -> str | None:
        if not (rec.stream.startswith(RUN_STREAM_PREFIX) and isinstance(rec.event, RUN_LEVEL)):
            return None
        row = summary(ui.store, rec.stream[len(RUN_STREAM_PREFIX) :])
        return None if row is None else _sse("run", {**row.to_json(), "seq": rec.position})

    async def events() -> AsyncIterator[str]:
        with ui.feed.subscribe() as feed:
            yield _sse("hello", {})
            async for text in _frames(feed, row_of):
                yield text

    return StreamingResponse(events(), media_type="text/event-stream")
