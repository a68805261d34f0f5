from __future__ import annotations

import multiprocessing
import pathlib

import pytest

from eventstore import ConcurrencyError, EventStore
from tests.eventstore import workers
from tests.eventstore.events import Counted, Event

spawn = multiprocessing.get_context("spawn")
PER_WRITER = 1500


def test_two_writer_processes_and_a_tailing_process(store_path: pathlib.Path) -> None:
    """With two processes appending and one tailing, the tail sees every event exactly once,
    in position order, and each writer's events in its own order."""
    EventStore.open(store_path, Event).close()
    start, ready = spawn.Event(), spawn.Event()
    receive, send = spawn.Pipe(duplex=False)
    tailer = spawn.Process(target=workers.tail, args=(str(store_path), 2 * PER_WRITER, send, ready))
    writers = [
        spawn.Process(target=workers.append_many, args=(str(store_path), name, PER_WRITER, start))
        for name in ("w1", "w2")
    ]
    tailer.start()
    for writer in writers:
        writer.start()
    assert ready.wait(30)
    start.set()
    assert receive.poll(60)
    seen = receive.recv()
    for process in [*writers, tailer]:
        process.join(30)
        assert process.exitcode == 0
    assert [position for position, _, _ in seen] == list(range(1, 2 * PER_WRITER + 1))
    for name in ("w1", "w2"):
        assert [n for _, stream, n in seen if stream == name] == list(range(PER_WRITER))


def test_a_map_grown_by_another_process_is_adopted(store_path: pathlib.Path) -> None:
    """A process keeps reading and appending after another process grew the map past its own."""
    with EventStore.open(store_path, Event) as store:
        store.append("mine", [Counted(0)])
        child = spawn.Process(target=workers.grow, args=(str(store_path), 100_000, 1000))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert store.last_position() == 1001
        assert sum(1 for _ in store.read_all()) == 1001
        assert store.append("mine", [Counted(1)]) == [1002]


def test_stream_versions_written_by_another_process_are_seen(store_path: pathlib.Path) -> None:
    """The writer caches stream versions between its commits; an append by another
    process to the same stream must invalidate that cache, so expected_version is
    checked against the real version and versions stay dense."""
    started = spawn.Event()
    started.set()
    with EventStore.open(store_path, Event) as store:
        assert store.append("shared", [Counted(0)], expected_version=0) == [1]
        child = spawn.Process(
            target=workers.append_many, args=(str(store_path), "shared", 3, started)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        with pytest.raises(ConcurrencyError) as caught:
            store.append("shared", [Counted(1)], expected_version=1)
        assert caught.value.actual == 4
        assert store.append("shared", [Counted(1)], expected_version=4) == [5]
        assert store.append("shared", [Counted(2)]) == [6]
        records = list(store.read_stream("shared"))
        assert [r.version for r in records] == [1, 2, 3, 4, 5, 6]
        assert store.stream_info("shared").first_position == 1  # type: ignore[union-attr]
