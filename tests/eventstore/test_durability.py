from __future__ import annotations

import pathlib

from eventstore import EventStore
from tests.eventstore.events import Counted, Event


def test_relaxed_appends_persist_after_close_and_reopen(store_path: pathlib.Path) -> None:
    """Relaxed-mode appends are all there after close and reopen in sync mode."""
    with EventStore.open(store_path, Event, durability="relaxed") as store:
        assert store.durability == "relaxed"
        for i in range(200):
            store.append(f"s{i % 4}", [Counted(i)])
    with EventStore.open(store_path, Event) as store:
        assert [r.event for r in store.read_all()] == [Counted(i) for i in range(200)]
        assert [s.version for s in store.streams()] == [50, 50, 50, 50]
