"""The store's indexer hook: an index written in the append's own transaction,
caught up on appends made without it, and rebuilt from the log alone."""

from __future__ import annotations

import pathlib
import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore import EventStore, EventStoreError, IndexTxn, Recorded
from tests.eventstore.events import Counted, Event, Opened


class CountIndex:
    """Per stream: how many Counted events and their sum; one key per Opened name."""

    name = "counts"
    databases = ("sums", "names")

    def apply(self, txn: IndexTxn, records: Sequence[Recorded[Event]]) -> None:
        for rec in records:
            key = rec.stream.encode()
            if isinstance(rec.event, Counted):
                raw = txn.get("sums", key)
                count, total = struct.unpack(">qq", raw) if raw else (0, 0)
                txn.put("sums", key, struct.pack(">qq", count + 1, total + rec.event.n))
            else:
                txn.put("names", rec.event.name.encode() + b"\0" + key, b"")


class OtherIndex(CountIndex):
    name = "other"


def expected(store: EventStore[Event]) -> tuple[dict[bytes, tuple[int, int]], set[bytes]]:
    """What a fold of the whole log says the index holds."""
    sums: dict[bytes, tuple[int, int]] = {}
    names: set[bytes] = set()
    for rec in store.read_all():
        key = rec.stream.encode()
        if isinstance(rec.event, Counted):
            count, total = sums.get(key, (0, 0))
            sums[key] = (count + 1, total + rec.event.n)
        else:
            names.add(rec.event.name.encode() + b"\0" + key)
    return sums, names


def indexed(store: EventStore[Event]) -> tuple[dict[bytes, tuple[int, int]], set[bytes]]:
    sums = {k: struct.unpack(">qq", v) for k, v in store.index_range("sums", b"")}
    names = {k for k, _ in store.index_range("names", b"")}
    return sums, names


def open_indexed(path: pathlib.Path) -> EventStore[Event]:
    return EventStore.open(path, Event, durability="relaxed", indexer=CountIndex())


appends = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.lists(
            st.one_of(
                st.builds(Counted, n=st.integers(-5, 5)),
                st.builds(Opened, name=st.sampled_from(["x", "y"])),
            ),
            min_size=1,
            max_size=4,
        ),
        st.sampled_from(["indexed", "plain", "reopen", "rebuild"]),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(appends)
def test_index_equals_a_fold_of_the_log_whoever_appended(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, list[Event], str]]
) -> None:
    """Appends through the indexed store, through a store opened without the index
    (older code) and reopens all leave the index equal to a fold of the whole log;
    so does a rebuild."""
    path = tmp_path_factory.mktemp("idx") / "store"
    store = open_indexed(path)
    try:
        for stream, events, how in steps:
            if how == "plain":  # another process without the index: the log only
                store.close()
                with EventStore.open(path, Event, durability="relaxed") as plain:
                    plain.append(stream, events)
                store = open_indexed(path)
            else:
                store.append(stream, events)
            if how == "reopen":
                store.close()
                store = open_indexed(path)
            elif how == "rebuild":
                store.rebuild_index()
            assert indexed(store) == expected(store)
            assert store.index_position() == store.last_position()
    finally:
        store.close()


def test_an_indexed_append_catches_up_on_a_gap_left_by_another_handle(
    tmp_path: pathlib.Path,
) -> None:
    """Events appended without the index (its position stays behind) are indexed by the
    next indexed append, in the same transaction."""
    path = tmp_path / "store"
    with EventStore.open(path, Event) as plain:
        plain.append("a", [Counted(n=1), Counted(n=2)])
    with open_indexed(path) as store:
        assert store.index_position() == 2  # caught up on open
        assert indexed(store) == expected(store)
        store.append("a", [Counted(n=3)])
        assert indexed(store)[0] == {b"a": (3, 6)}


def test_a_failing_indexer_fails_the_append_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    """The index and the log commit together or not at all."""

    class Broken(CountIndex):
        def apply(self, txn: IndexTxn, records: Sequence[Recorded[Event]]) -> None:
            super().apply(txn, records)
            raise RuntimeError("index bug")

    with EventStore.open(tmp_path / "s", Event, indexer=Broken()) as store:
        with pytest.raises(EventStoreError, match="nothing was written"):
            store.append("a", [Counted(n=1)])
        assert store.last_position() == 0
        assert store.index_range("sums", b"") == []


def test_one_environment_takes_one_index(tmp_path: pathlib.Path) -> None:
    """A second handle in the process may omit the index (its appends are still
    indexed) but may not name another one."""
    path = tmp_path / "s"
    with (
        open_indexed(path) as store,
        EventStore.open(path, Event, durability="relaxed") as other,
    ):
        other.append("a", [Counted(n=4)])
        assert indexed(store)[0] == {b"a": (1, 4)}
        with pytest.raises(EventStoreError, match="counts"):
            EventStore.open(path, Event, durability="relaxed", indexer=OtherIndex())


def test_index_range_bounds_and_order(tmp_path: pathlib.Path) -> None:
    """lo is inclusive, hi exclusive, in both directions, with a limit."""
    with open_indexed(tmp_path / "s") as store:
        store.append("s", [Opened(name=n) for n in "abcde"])
        keys = [n.encode() + b"\0s" for n in "abcde"]
        assert [k for k, _ in store.index_range("names", b"b", b"d\0s")] == keys[1:3]
        assert [k for k, _ in store.index_range("names", b"b", b"d\0s", reverse=True)] == [
            keys[2],
            keys[1],
        ]
        assert [k for k, _ in store.index_range("names", b"", reverse=True, limit=2)] == [
            keys[4],
            keys[3],
        ]
        assert [k for k, _ in store.index_range("names", b"", b"zz", reverse=True)] == keys[::-1]
        assert store.index_range("names", b"", b"a", reverse=True) == []
        assert store.index_get("names", [keys[0], b"nope"]) == [b"", None]
        with pytest.raises(ValueError, match="no index database"):
            store.index_range("nope", b"")
