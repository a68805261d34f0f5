"""``check_store`` and read-only opens, on real LMDB files.

Damage that LMDB's pages do not show (a record that does not decode, an index
entry that disagrees with the events) is made with raw LMDB writes, so the
page walk passes and the record checks must find it. Damage to the pages
themselves is the e2e corpus's job (tests/e2e/test_damaged_data.py), where a
signal kills a child process rather than the test run.
"""

from __future__ import annotations

import hashlib
import pathlib
from collections.abc import Callable
from typing import Any

import lmdb
import pytest

from eventstore import (
    EventStore,
    StoreFormatError,
    StoreReadOnlyError,
    check_store,
)
from eventstore import _format as fmt
from tests.eventstore.events import Counted, Event, Opened


def _filled(path: pathlib.Path) -> None:
    with EventStore.open(path, Event) as store:
        for n in range(30):
            store.append(f"s-{n % 3}", [Counted(n, "x" * n)])
        store.append("big", [Opened("y" * 9000)])  # an overflow page


def _tamper(path: pathlib.Path, change: Callable[[Any, dict[bytes, Any]], None]) -> None:
    env = lmdb.open(str(path), max_dbs=8, subdir=True)
    with env.begin(write=True) as txn:
        names = (fmt.DB_EVENTS, fmt.DB_STREAMS_INDEX, fmt.DB_STREAMS)
        change(txn, {name: env.open_db(name, txn=txn) for name in names})
    env.close()


def _digests(path: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in path.iterdir()}


def test_a_sound_store_checks_sound_and_counts_what_it_holds(store_path: pathlib.Path) -> None:
    _filled(store_path)
    before = _digests(store_path)
    report = check_store(store_path, Event)
    assert report.sound, report.problems
    assert (report.events, report.streams) == (31, 4)
    assert report.pages >= 5
    assert _digests(store_path) == before


def test_a_record_that_does_not_decode_is_named_by_its_position(store_path: pathlib.Path) -> None:
    _filled(store_path)
    _tamper(store_path, lambda txn, db: txn.put(fmt.pack_u64(7), b"\xc1garbage", db=db[b"events"]))
    report = check_store(store_path, Event)
    assert not report.sound
    assert [p.position for p in report.problems] == [7]
    assert "does not decode" in report.problems[0].message


def test_index_entries_that_disagree_with_the_events_are_each_reported(
    store_path: pathlib.Path,
) -> None:
    _filled(store_path)

    def change(txn: Any, db: dict[bytes, Any]) -> None:
        txn.delete(fmt.index_key(b"s-1", 2), db=db[b"streams_index"])
        row = fmt.decode_row(txn.get(b"s-2", db=db[b"streams"]))
        txn.put(
            b"s-2", fmt.encode_row(fmt.StreamRow(row.version + 1, 3, 99, 0, 0)), db=db[b"streams"]
        )

    _tamper(store_path, change)
    report = check_store(store_path, Event)
    messages = [p.message for p in report.problems]
    assert any("missing from the stream index" in m for m in messages), messages
    assert any("stream row of 's-2'" in m for m in messages), messages
    assert len(report.problems) == 2


def test_a_gap_in_positions_is_reported(store_path: pathlib.Path) -> None:
    _filled(store_path)
    _tamper(store_path, lambda txn, db: txn.delete(fmt.pack_u64(12), db=db[b"events"]))
    report = check_store(store_path, Event)
    assert 12 in [p.position for p in report.problems]


def test_a_truncated_file_is_reported_without_lmdb_mapping_it(store_path: pathlib.Path) -> None:
    _filled(store_path)
    data = store_path / "data.mdb"
    data.write_bytes(data.read_bytes()[: 3 * 4096])
    report = check_store(store_path, Event)
    assert not report.sound and "truncated" in report.problems[0].message


def test_check_refuses_what_is_not_a_store(tmp_path: pathlib.Path) -> None:
    (tmp_path / "data.mdb").write_bytes(b"hello, not LMDB" * 1000)
    with pytest.raises(StoreFormatError):
        check_store(tmp_path, Event)
    with pytest.raises(StoreFormatError):
        check_store(tmp_path / "missing", Event)


def test_a_read_only_open_reads_everything_and_writes_nothing(store_path: pathlib.Path) -> None:
    _filled(store_path)
    before = _digests(store_path)
    with EventStore.open(store_path, Event, create=False, readonly=True) as store:
        assert store.last_position() == 31
        assert len(list(store.read_all())) == 31
        assert [r.event.n for r in store.read_stream("s-1")] == list(range(1, 30, 3))
        assert {info.name for info in store.streams()} == {"big", "s-0", "s-1", "s-2"}
        with pytest.raises(StoreReadOnlyError):
            store.append("s-1", [Counted(99)])
        with pytest.raises(StoreReadOnlyError):
            store.replace_stream("s-1", [Counted(99)])
        with pytest.raises(StoreReadOnlyError):
            store.remove_streams(["s-1"], "gone", [Counted(99)])
    # lock.mdb, writable here, holds LMDB's reader table; the log itself is untouched
    assert _digests(store_path)["data.mdb"] == before["data.mdb"]


def test_a_read_only_open_of_a_missing_store_creates_nothing(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StoreFormatError):
        EventStore.open(tmp_path / "none", Event, readonly=True)
    assert not (tmp_path / "none").exists()
