from __future__ import annotations

import multiprocessing
import os
import pathlib
import random
import signal
import time
from collections import Counter

import pytest

from eventstore import EventStore
from tests.eventstore import workers
from tests.eventstore.events import Event

spawn = multiprocessing.get_context("spawn")


def _run_and_kill(path: pathlib.Path, durability: str, rng: random.Random) -> list[int]:
    """Start an appending child, SIGKILL it at a random moment; return acknowledged positions."""
    receive, send = spawn.Pipe(duplex=False)
    child = spawn.Process(target=workers.append_until_killed, args=(str(path), durability, send))
    child.start()
    send.close()
    acknowledged: list[int] = []
    assert receive.poll(30), "child never acknowledged an append"
    deadline = time.monotonic() + rng.uniform(0.02, 0.3)
    while time.monotonic() < deadline:
        if receive.poll(0.005):
            acknowledged.extend(receive.recv())
    assert child.pid is not None
    os.kill(child.pid, signal.SIGKILL)
    child.join(10)
    while True:  # drain what was acknowledged before the kill
        try:
            acknowledged.extend(receive.recv())
        except (EOFError, OSError):
            break
    receive.close()
    return acknowledged


@pytest.mark.crash
@pytest.mark.parametrize(("durability", "kills"), [("sync", 20), ("relaxed", 8)])
def test_sigkilled_writer_loses_no_acknowledged_event(
    store_path: pathlib.Path, durability: str, kills: int
) -> None:
    """After each SIGKILL of an appending process, every acknowledged event is there,
    positions are dense, and every stream is whole."""
    rng = random.Random(f"crash-{durability}")
    acknowledged: set[int] = set()
    for _ in range(kills):
        acknowledged.update(_run_and_kill(store_path, durability, rng))
        with EventStore.open(store_path, Event) as store:
            records = list(store.read_all())
            last = store.last_position()
            assert [r.position for r in records] == list(range(1, last + 1))
            assert acknowledged <= set(range(1, last + 1))
            for info in store.streams():
                stream = list(store.read_stream(info.name))
                assert [r.version for r in stream] == list(range(1, info.version + 1))
                assert stream[-1].position == info.last_position
            assert sum(s.version for s in store.streams()) == last
            # Nothing half-written: the child's append number n carried 1 + n % 7 events,
            # all stamped with one recorded_at by the one transaction that held them.
            appends = Counter((r.stream, r.recorded_at, r.event.n) for r in records)  # type: ignore[union-attr]
            assert all(count == 1 + n % 7 for (_, _, n), count in appends.items())
    assert len(acknowledged) > kills
