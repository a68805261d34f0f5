"""compact_store shrinks the file to what the log holds, keeps every event, every
position and every gap, and never loses a write: it refuses while any handle has the
store open, and an open that races with it is refused until it is done."""

from __future__ import annotations

import multiprocessing
import os
import pathlib
import signal
import time

import pytest

from eventstore import EventStore, StoreBusyError, compact_store
from tests.eventstore import workers
from tests.eventstore.events import Counted, Event, Opened

spawn = multiprocessing.get_context("spawn")


def fill(path: pathlib.Path, streams: int = 60) -> None:
    with EventStore.open(path, Event, durability="relaxed") as store:
        for i in range(streams):
            store.append(f"s{i}", [Counted(n, note="x" * 400) for n in range(20)])


def test_compaction_shrinks_the_file_and_keeps_events_positions_and_gaps(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "store"
    fill(path)
    with EventStore.open(path, Event) as store:
        store.remove_streams([f"s{i}" for i in range(50)], "pruned", [Opened("gone")])
        kept = [(r.position, r.stream, r.event) for r in store.read_all()]
        last = store.last_position()
        removed = store.removed_positions()
    before, after = compact_store(path, tmp_path / "scratch")
    assert after < before / 2
    assert (path / "data.mdb").stat().st_size == after
    assert not (tmp_path / "scratch").exists()
    with EventStore.open(path, Event) as store:
        assert [(r.position, r.stream, r.event) for r in store.read_all()] == kept
        assert (store.last_position(), store.removed_positions()) == (last, removed)
        assert store.append("s0", [Counted(99)]) == [last + 1]  # positions never go back


def test_compaction_refuses_while_this_or_another_process_has_the_store_open(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "store"
    fill(path, streams=3)
    size = (path / "data.mdb").stat().st_size
    with EventStore.open(path, Event) as store:
        with pytest.raises(StoreBusyError, match="open in this process"):
            compact_store(path, tmp_path / "scratch")
        assert store.stream_version("s0") == 20  # still usable: its locks were not dropped
    ready, done = spawn.Event(), spawn.Event()
    child = spawn.Process(target=workers.hold_open, args=(str(path), ready, done))
    child.start()
    try:
        assert ready.wait(60)
        with pytest.raises(StoreBusyError, match="open in another process"):
            compact_store(path, tmp_path / "scratch")
    finally:
        done.set()
        child.join(60)
    assert (path / "data.mdb").stat().st_size == size
    compact_store(path, tmp_path / "scratch")  # once it has closed the store


def test_an_appender_racing_compactions_is_refused_or_kept_never_lost(
    tmp_path: pathlib.Path,
) -> None:
    """A child compacts in a loop (then is SIGKILLed mid-loop) while this process opens
    the store, appends and closes, again and again: each open either is refused or its
    append survives every later compaction."""
    path = tmp_path / "store"
    scratch = tmp_path / "scratch"
    fill(path, streams=20)
    receive, send = spawn.Pipe(duplex=False)
    child = spawn.Process(target=workers.compact_forever, args=(str(path), str(scratch), send))
    child.start()
    acknowledged: list[tuple[int, int]] = []
    refused = compactions = 0
    deadline = time.monotonic() + 120
    try:
        i = 0
        while min(refused, compactions, len(acknowledged)) < 20 and time.monotonic() < deadline:
            while receive.poll():
                compactions += receive.recv()
            try:
                store = EventStore.open(path, Event)
            except StoreBusyError:
                refused += 1
                continue
            with store:
                (position,) = store.append("appended", [Counted(i)])
                acknowledged.append((position, i))
                i += 1
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(60)
    assert min(refused, compactions, len(acknowledged)) >= 20, (refused, compactions)
    compact_store(path, scratch)  # the killed one's leftovers are no obstacle
    with EventStore.open(path, Event) as store:
        found = [(r.position, r.event.n) for r in store.read_stream("appended")]  # type: ignore[union-attr]
        assert found == acknowledged
        assert store.stream_version("s19") == 20
