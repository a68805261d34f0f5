from __future__ import annotations

import os
import pathlib
import stat

import lmdb
import pytest

import eventstore
from eventstore import EventStore, StoreClosedError, StoreFormatError
from eventstore import _format as fmt
from tests.eventstore.events import Counted, Event


def _snapshot(path: pathlib.Path) -> dict[str, tuple[int, int, bytes]]:
    return {
        p.name: (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(path.iterdir())
    }


def test_public_api_is_exactly_the_documented_names() -> None:
    """The package's __all__ pins the public surface."""
    assert sorted(eventstore.__all__) == sorted(
        [
            "EventLog",
            "EventStore",
            "Recorded",
            "StreamInfo",
            "EventStoreError",
            "ConcurrencyError",
            "StoreFormatError",
            "PayloadTooLargeError",
            "CorruptEventError",
            "CorruptStoreError",
            "StoreClosedError",
            "Indexer",
            "IndexTxn",
            "StoreReadOnlyError",
            "StoreCheck",
            "StoreProblem",
            "check_store",
            "compact_store",
            "StoreBusyError",
        ]
    )


def test_the_store_meets_the_log_protocol_others_depend_on(tmp_path: pathlib.Path) -> None:
    """Every method of `EventLog` exists on a real store, with the same parameters."""
    import inspect

    with eventstore.EventStore.open(tmp_path / "s", dict) as store:
        assert isinstance(store, eventstore.EventLog)
        for name, method in vars(eventstore.EventLog).items():
            if callable(method) and not name.startswith("_"):
                wanted = list(inspect.signature(method).parameters)
                assert list(inspect.signature(getattr(store, name)).parameters) == wanted[1:]


def test_new_store_is_owner_only(tmp_path: pathlib.Path) -> None:
    """A new store directory is 0700 and its files 0600, whatever the umask."""
    old = os.umask(0o002)
    try:
        with EventStore.open(tmp_path / "a" / "store", Event) as store:
            store.append("s", [Counted(1)])
    finally:
        os.umask(old)
    path = tmp_path / "a" / "store"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    names = sorted(p.name for p in path.iterdir())
    assert names == ["data.mdb", "lock.mdb"]
    for name in names:
        assert stat.S_IMODE((path / name).stat().st_mode) == 0o600


def test_reopen_keeps_events(store_path: pathlib.Path) -> None:
    """Events appended before close are read back after reopening."""
    with EventStore.open(store_path, Event) as store:
        store.append("s", [Counted(1), Counted(2)])
    with EventStore.open(store_path, Event, create=False) as store:
        assert [r.event for r in store.read_all()] == [Counted(1), Counted(2)]
        assert store.path == store_path
        assert store.durability == "sync"


def test_foreign_directory_is_refused_untouched(tmp_path: pathlib.Path) -> None:
    """A directory holding other files raises StoreFormatError and is left as it was."""
    (tmp_path / "notes.txt").write_text("mine")
    before = _snapshot(tmp_path)
    with pytest.raises(StoreFormatError, match=r"notes\.txt"):
        EventStore.open(tmp_path, Event)
    assert _snapshot(tmp_path) == before


def test_file_path_is_refused(tmp_path: pathlib.Path) -> None:
    """A path that is a file raises StoreFormatError."""
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreFormatError, match="file"):
        EventStore.open(tmp_path / "f", Event)


def test_foreign_lmdb_is_refused_untouched(tmp_path: pathlib.Path) -> None:
    """An LMDB environment without the store's marker is refused without creating files."""
    env = lmdb.open(str(tmp_path / "db"), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"hello", b"world")
    env.close()
    (tmp_path / "db" / "lock.mdb").unlink()
    before = _snapshot(tmp_path / "db")
    with pytest.raises(StoreFormatError, match="not an event store"):
        EventStore.open(tmp_path / "db", Event)
    assert _snapshot(tmp_path / "db") == before


def test_newer_format_is_refused_untouched(store_path: pathlib.Path) -> None:
    """A store written by a newer format version raises StoreFormatError naming both versions."""
    EventStore.open(store_path, Event).close()
    env = lmdb.open(str(store_path), max_dbs=8)
    meta = env.open_db(fmt.DB_META)
    with env.begin(write=True) as txn:
        txn.put(fmt.KEY_VERSION, fmt.pack_version(fmt.FORMAT_VERSION + 1), db=meta)
    env.close()
    before = _snapshot(store_path)
    with pytest.raises(StoreFormatError, match=f"format {fmt.FORMAT_VERSION + 1}"):
        EventStore.open(store_path, Event)
    assert _snapshot(store_path) == before


def test_create_false_on_missing_store_creates_nothing(tmp_path: pathlib.Path) -> None:
    """Opening a missing store with create=False raises and leaves no directory behind."""
    with pytest.raises(StoreFormatError, match="no event store"):
        EventStore.open(tmp_path / "missing", Event, create=False)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreFormatError, match="no event store"):
        EventStore.open(tmp_path / "empty", Event, create=False)
    assert list((tmp_path / "empty").iterdir()) == []


def test_bad_arguments_raise_value_error(store_path: pathlib.Path) -> None:
    """Unknown durability modes and non-positive payload limits are rejected."""
    with pytest.raises(ValueError, match="durability"):
        EventStore.open(store_path, Event, durability="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_payload"):
        EventStore.open(store_path, Event, max_payload=0)


def test_every_operation_after_close_raises_store_closed(store_path: pathlib.Path) -> None:
    """Using a closed store raises StoreClosedError, and close is idempotent."""
    store = EventStore.open(store_path, Event)
    store.append("s", [Counted(1)])
    store.close()
    store.close()
    for call in (
        lambda: store.append("s", [Counted(2)]),
        lambda: list(store.read_all()),
        lambda: list(store.read_stream("s")),
        lambda: store.stream_version("s"),
        lambda: store.last_position(),
        lambda: store.streams(),
        lambda: store.stream_info("s"),
        lambda: store.follow(),
    ):
        with pytest.raises(StoreClosedError):
            call()


def test_two_handles_in_one_process_share_the_environment(store_path: pathlib.Path) -> None:
    """A second open of the same directory in one process sees the same log and
    survives the first handle being closed."""
    first = EventStore.open(store_path, Event)
    second = EventStore.open(store_path, Event)
    first.append("s", [Counted(1)])
    first.close()
    second.append("s", [Counted(2)])
    assert [r.event for r in second.read_stream("s")] == [Counted(1), Counted(2)]
    with pytest.raises(StoreFormatError, match="durability"):
        EventStore.open(store_path, Event, durability="relaxed")
    second.close()
    with EventStore.open(store_path, Event, durability="relaxed") as third:
        assert third.last_position() == 2
