from __future__ import annotations

import pathlib

import lmdb
import msgspec
import pytest

from eventstore import CorruptEventError, EventStore, Recorded, StreamInfo
from eventstore import _format as fmt
from tests.eventstore.events import Counted, CountedV2, Event, Opened


def test_read_stream_yields_versions_in_order_from_a_version(store: EventStore[Event]) -> None:
    """read_stream returns the stream's own events from from_version on."""
    store.append("a", [Opened("a")])
    store.append("b", [Opened("b")])
    store.append("a", [Counted(1), Counted(2)])
    records = list(store.read_stream("a", from_version=2))
    assert [(r.position, r.version, r.event) for r in records] == [
        (3, 2, Counted(1)),
        (4, 3, Counted(2)),
    ]
    assert all(isinstance(r, Recorded) and r.stream == "a" for r in records)
    assert list(store.read_stream("missing")) == []
    assert list(store.read_stream("a", from_version=9)) == []


def test_read_stream_spans_read_batches(store: EventStore[Event]) -> None:
    """A stream longer than one read batch is read completely and in order."""
    store.append("long", [Counted(i) for i in range(5000)])
    assert [r.event.n for r in store.read_stream("long")] == list(range(5000))  # type: ignore[union-attr]


def test_read_all_covers_an_inclusive_range(store: EventStore[Event]) -> None:
    """read_all yields positions from_position..to_position inclusive, in log order."""
    for i in range(10):
        store.append(f"s{i % 3}", [Counted(i)])
    assert [r.position for r in store.read_all()] == list(range(1, 11))
    assert [r.position for r in store.read_all(4, 6)] == [4, 5, 6]
    assert [r.position for r in store.read_all(9, 100)] == [9, 10]
    assert list(store.read_all(11)) == []
    first = next(store.read_all())
    assert first.recorded_at > 0 and first.stream == "s0" and first.version == 1


def test_read_all_stops_at_the_end_seen_when_it_started(store: EventStore[Event]) -> None:
    """Events appended during a read_all are not part of it."""
    store.append("s", [Counted(1)])
    seen = []
    for record in store.read_all():
        seen.append(record.position)
        store.append("s", [Counted(2)])
    assert seen == [1]


def test_streams_and_stream_info_come_from_the_index(store: EventStore[Event]) -> None:
    """streams(prefix) lists matching streams with versions and positions."""
    store.append("run-1", [Opened("1"), Counted(1)])
    store.append("run-2", [Opened("2")])
    store.append("agent-1", [Opened("a")])
    store.append("run-1", [Counted(2)])
    assert [s.name for s in store.streams()] == ["agent-1", "run-1", "run-2"]
    runs = store.streams("run-")
    assert [(s.name, s.version, s.first_position, s.last_position) for s in runs] == [
        ("run-1", 3, 1, 5),
        ("run-2", 1, 3, 3),
    ]
    info = store.stream_info("run-1")
    assert isinstance(info, StreamInfo) and info.created_at <= info.updated_at
    assert store.stream_info("nope") is None
    assert store.stream_version("nope") == 0
    assert store.streams("zzz") == []


def test_events_decode_leniently_after_a_field_is_added(store_path: pathlib.Path) -> None:
    """Events written with an older Struct decode into a newer one with defaults, and
    events written with extra fields decode into the older one."""
    with EventStore.open(store_path, CountedV2) as store:
        store.append("s", [CountedV2(1, extra=9)])
    with EventStore.open(store_path, Counted) as store:
        store.append("s", [Counted(2)])
        assert [r.event for r in store.read_all()] == [Counted(1), Counted(2)]
    with EventStore.open(store_path, CountedV2) as store:
        assert [r.event.extra for r in store.read_all()] == [9, 7]


def _overwrite(path: pathlib.Path, position: int, value: bytes) -> None:
    env = lmdb.open(str(path), max_dbs=8)
    events = env.open_db(fmt.DB_EVENTS)
    with env.begin(write=True) as txn:
        txn.put(fmt.pack_u64(position), value, db=events)
    env.close()


@pytest.mark.parametrize(
    "value",
    [b"\xc1garbage", msgspec.msgpack.encode((2, "s", 2, 1.0, {"type": "Unknown"}))],
    ids=["not-msgpack", "unknown-tag"],
)
def test_a_corrupt_event_raises_naming_its_position(store_path: pathlib.Path, value: bytes) -> None:
    """An undecodable record raises CorruptEventError with its position; none is skipped."""
    with EventStore.open(store_path, Event) as store:
        store.append("s", [Counted(i) for i in range(5)])
    _overwrite(store_path, 2, value)
    with EventStore.open(store_path, Event) as store:
        reader = store.read_all()
        with pytest.raises(CorruptEventError) as caught:
            list(reader)
        assert caught.value.position == 2
        assert "position 2" in str(caught.value)
        with pytest.raises(CorruptEventError, match="position 2"):
            list(store.read_stream("s"))
        assert [r.position for r in store.read_all(3)] == [3, 4, 5]


def test_a_record_under_the_wrong_key_is_corrupt(store_path: pathlib.Path) -> None:
    """A record stored under another position's key raises CorruptEventError naming that key."""
    with EventStore.open(store_path, Event) as store:
        store.append("s", [Counted(i) for i in range(5)])
    _overwrite(
        store_path, 3, fmt.encode_event_value(4, "s", 4, 1.0, msgspec.msgpack.encode(Counted(0)))
    )
    with EventStore.open(store_path, Event) as store:
        with pytest.raises(CorruptEventError) as caught:
            list(store.read_all())
        assert caught.value.position == 3


def test_a_missing_position_raises_instead_of_skipping(store_path: pathlib.Path) -> None:
    """A hole in the positions raises CorruptEventError instead of silently skipping."""
    with EventStore.open(store_path, Event) as store:
        store.append("s", [Counted(i) for i in range(5)])
    env = lmdb.open(str(store_path), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.delete(fmt.pack_u64(3), db=env.open_db(fmt.DB_EVENTS, txn=txn))
    env.close()
    with EventStore.open(store_path, Event) as store:
        with pytest.raises(CorruptEventError):
            list(store.read_all())
        with pytest.raises(CorruptEventError) as caught:
            store.read_positions([1, 3, 5])
        assert caught.value.position == 3
        assert [r.position for r in store.read_positions([5, 1])] == [5, 1]


def test_map_grows_past_its_initial_size(store_path: pathlib.Path) -> None:
    """Appending far more than the initial 64 MiB map grows it without an error."""
    big = "x" * 60_000
    with EventStore.open(store_path, Event) as store:
        for batch in range(30):
            store.append(f"s{batch % 3}", [Counted(i, note=big) for i in range(50)])
        assert store.last_position() == 1500
        size = store_path.joinpath("data.mdb").stat().st_size
        assert size > 64 << 20
    with EventStore.open(store_path, Event) as store:
        assert sum(1 for _ in store.read_all()) == 1500
        store.append("s0", [Counted(1)])
