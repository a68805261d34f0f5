from __future__ import annotations

import collections
import threading

from eventstore import EventStore
from tests.eventstore.events import Counted, Event

THREADS = 8
APPENDS = 5000


def test_many_threads_get_dense_positions_and_ordered_streams(store: EventStore[Event]) -> None:
    """8 threads x 5,000 appends yield positions 1..40,000 and each stream in append order."""
    returned: dict[int, list[int]] = {}

    def work(t: int) -> None:
        mine = []
        for i in range(APPENDS):
            # Threads share streams, so per-stream order interleaves several threads.
            (position,) = store.append(f"s{(t + i) % 4}", [Counted(t * APPENDS + i)])
            mine.append(position)
        returned[t] = mine

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = THREADS * APPENDS
    everything = list(store.read_all())
    assert [r.position for r in everything] == list(range(1, total + 1))
    assert sorted(p for ps in returned.values() for p in ps) == list(range(1, total + 1))
    for positions in returned.values():
        assert positions == sorted(positions)
    versions: dict[str, int] = collections.Counter()
    last_index_of_thread: dict[tuple[str, int], int] = {}
    for record in everything:
        versions[record.stream] += 1
        assert record.version == versions[record.stream]
        n = record.event.n  # type: ignore[union-attr]
        key = (record.stream, n // APPENDS)
        assert last_index_of_thread.get(key, -1) < n % APPENDS
        last_index_of_thread[key] = n % APPENDS
    for info in store.streams():
        assert [r.version for r in store.read_stream(info.name)] == list(range(1, info.version + 1))
