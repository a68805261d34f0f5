"""Child-process entry points for the multi-process and crash tests (spawned, so
they must be importable top-level functions)."""

from __future__ import annotations

import pathlib
import time
from multiprocessing.connection import Connection
from typing import Any

from eventstore import EventStore
from tests.eventstore.events import Counted, Event


def append_many(path: str, name: str, count: int, start: Any) -> None:
    """Append ``count`` single-event appends to stream ``name`` once ``start`` is set."""
    start.wait()
    with EventStore.open(pathlib.Path(path), Event) as store:
        for i in range(count):
            store.append(name, [Counted(i)])


def tail(path: str, total: int, conn: Connection, ready: Any) -> None:
    """Follow the store until ``total`` events were seen; send (position, stream, n) back."""
    with EventStore.open(pathlib.Path(path), Event) as store:
        ready.set()
        seen = []
        deadline = time.monotonic() + 60
        for record in store.follow():
            seen.append((record.position, record.stream, record.event.n))  # type: ignore[union-attr]
            if len(seen) == total or time.monotonic() > deadline:
                break
        conn.send(seen)


def grow(path: str, note_size: int, count: int) -> None:
    """Append enough big events to push the map past its initial size."""
    with EventStore.open(pathlib.Path(path), Event) as store:
        for i in range(count):
            store.append("big", [Counted(i, note="x" * note_size)])


def append_until_killed(path: str, durability: str, conn: Connection) -> None:
    """Append batches forever, sending each acknowledged batch's positions to the parent."""
    with EventStore.open(pathlib.Path(path), Event, durability=durability) as store:  # type: ignore[arg-type]
        i = 0
        while True:
            size = 1 + i % 7
            positions = store.append(f"s{i % 5}", [Counted(i, note="y" * 50) for _ in range(size)])
            conn.send(positions)
            i += 1


def hold_open(path: str, ready: Any, done: Any) -> None:
    """Keep the store open until ``done`` is set."""
    with EventStore.open(pathlib.Path(path), Event):
        ready.set()
        done.wait(60)


def compact_forever(path: str, scratch: str, conn: Connection) -> None:
    """Compact the store again and again (until killed), telling the parent after each;
    a refusal (the parent has the store open) is retried."""
    from eventstore import StoreBusyError, compact_store

    while True:
        try:
            compact_store(path, scratch)
        except StoreBusyError:
            time.sleep(0.001)
            continue
        conn.send(1)
