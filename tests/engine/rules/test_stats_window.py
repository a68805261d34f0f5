"""`wfa stats --since` reads only the window, and its figures equal a whole-log fold."""

from __future__ import annotations

from pathlib import Path

from engine.rules.events import Event
from engine.rules.stats import compute_stats, window_records
from engine.run_index import RunIndexer
from eventstore import EventStore
from tests.engine.rules.test_stats import FLOW, OTHER, run


def fill(store: EventStore[Event]) -> int:
    """Runs every 1,000 s, some lasting longer than the gap (they span a window's
    start), appended one event at a time in time order so that runs interleave."""
    records = []
    for i in range(30):
        took = 2500.0 if i % 4 == 0 else 5.0 + i
        records += run(f"r{i}", FLOW if i % 3 else OTHER, i * 1000.0, took, f"a{i % 2}", i % 5 == 0)
    records.sort(key=lambda r: r.event.at)
    for rec in records:
        store.append(rec.stream, [rec.event])
    return len(records)


def test_windowed_stats_equal_a_fold_of_the_whole_log_and_read_less(tmp_path: Path) -> None:
    with EventStore.open(tmp_path / "events", Event, indexer=RunIndexer()) as store:
        total = fill(store)
        for since in (None, 0.0, 999.0, 1001.5, 12_500.0, 26_000.0, 29_100.0, 40_000.0):
            windowed = list(window_records(store, since))
            assert compute_stats(windowed, since) == compute_stats(store.read_all(), since)
            if since is not None and since >= 26_000:
                assert len(windowed) < total / 4
        late = list(window_records(store, 26_000.0))
        # a run that began before the window brings its earlier events, once, in order
        positions = [r.position for r in late]
        assert len(set(positions)) == len(positions)
        assert any(r.event.at < 26_000.0 - 60 for r in late)


def test_position_at_finds_the_first_position_at_or_after_a_time(tmp_path: Path) -> None:
    with EventStore.open(tmp_path / "events", Event, indexer=RunIndexer()) as store:
        fill(store)
        times = [(r.position, r.event.at) for r in store.read_all()]
        for at in (-1.0, 0.0, 500.0, 7000.0, 29_007.0, 10**9):
            found = store.position_at(at, key=lambda r: r.event.at)
            expected = next((p for p, t in times if t >= at), store.last_position() + 1)
            assert found == expected
