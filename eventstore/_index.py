"""Indexes kept inside the log's own write transactions.

An ``Indexer`` maps newly recorded events to writes in named LMDB databases of
the store's environment. It runs inside the very write transaction that appends
those events, so an index can never disagree with the log after a crash: both
commit or neither does. The store records, in ``meta``, the position up to
which each indexer has seen the log (in the same transaction), so appends made
by a process that opened the store without the indexer (older code, a tool) are
found and indexed: on open, and by the next indexed append, which first catches
up on the gap. Because an index is a function of the log alone, dropping it and
catching up from position 1 rebuilds it (``EventStore.rebuild_index``).

The store stays generic: it knows an indexer only by this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

import lmdb
import msgspec

from . import _format as fmt
from . import _gaps
from ._errors import CorruptEventError, EventStoreError, StoreReadOnlyError
from ._types import Recorded

E = TypeVar("E")

CATCH_UP_BATCH = 20_000
"""Events indexed per transaction when catching up on open or rebuilding."""


class IndexTxn:
    """What an indexer may do inside the append's write transaction: read and write
    its own databases, by the names it declared."""

    __slots__ = ("_dbs", "_txn")

    def __init__(self, txn: Any, dbs: dict[str, Any]) -> None:
        self._txn = txn
        self._dbs = dbs

    def get(self, db: str, key: bytes) -> bytes | None:
        value: bytes | None = self._txn.get(key, db=self._dbs[db])
        return value

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._dbs[db])

    def delete(self, db: str, key: bytes) -> None:
        self._txn.delete(key, db=self._dbs[db])


class Indexer(Protocol[E]):
    """Maps recorded events to index writes; must be a pure function of the events
    (and the index's current content), so that a rebuild from the log reproduces it."""

    @property
    def name(self) -> str:
        """Identifies the index; its position in the log is stored under this name."""
        ...

    @property
    def databases(self) -> tuple[str, ...]:
        """The named LMDB databases it owns (emptied by a rebuild)."""
        ...

    def apply(self, txn: IndexTxn, records: Sequence[Recorded[E]]) -> None:
        """Index ``records`` (consecutive positions, log order). Runs in the writer's
        thread inside its write transaction; must not block or touch the store."""
        ...


def database_name(name: str) -> bytes:
    """The LMDB name of an index database: kept apart from the store's own."""
    return b"index:" + name.encode("utf-8")


class InstalledIndexer(Generic[E]):
    """An indexer bound to an environment: its database handles, decoder and position."""

    def __init__(
        self, env: Any, meta_db: Any, indexer: Indexer[E], event_type: Any, readonly: bool = False
    ) -> None:
        self.indexer = indexer
        self.name = indexer.name
        self.position_key = b"indexed:" + indexer.name.encode("utf-8")
        self.meta_db = meta_db
        if readonly:  # the index must exist already: a read-only open writes nothing
            try:
                self.dbs = {
                    db: env.open_db(database_name(db), create=False) for db in indexer.databases
                }
            except lmdb.NotFoundError:
                raise StoreReadOnlyError(
                    f"the log has no {indexer.name} index yet, and read-only it cannot build "
                    "one: run any command once as the directory's owner"
                ) from None
        else:
            with env.begin(write=True) as txn:
                self.dbs = {db: env.open_db(database_name(db), txn=txn) for db in indexer.databases}
        self._decoder = fmt.event_decoder(event_type)

    def position(self, txn: Any) -> int:
        """The last log position this index has seen (0: none, or never indexed)."""
        raw = txn.get(self.position_key, db=self.meta_db)
        return 0 if raw is None else fmt.unpack_u64(raw)

    def apply(
        self,
        txn: Any,
        last: int,
        records: Sequence[Recorded[E]],
        events_db: Any,
        pruned_db: Any,
    ) -> None:
        """Index a batch appended after position ``last``; first catch up on any gap
        left by appenders that did not index."""
        seen = self.position(txn)
        if seen < last:
            self.catch_up(txn, events_db, seen, last, pruned_db)
        if records:
            self.indexer.apply(IndexTxn(txn, self.dbs), records)
            txn.put(self.position_key, fmt.pack_u64(records[-1].position), db=self.meta_db)

    def catch_up(self, txn: Any, events_db: Any, seen: int, until: int, pruned_db: Any) -> int:
        """Index the log's positions ``seen+1 .. until`` from the events database
        (skipping recorded gaps); return the new position."""
        cursor = txn.cursor(db=events_db)
        position = seen + 1
        index_txn = IndexTxn(txn, self.dbs)
        while position <= until:
            positions, values = _gaps.read_range(txn, cursor, pruned_db, position, until, 2048)
            try:
                records: list[Recorded[E]] = [self._decoder.decode(v) for v in values]
            except msgspec.DecodeError as exc:
                raise CorruptEventError(position, str(exc)) from exc
            if records:
                self.indexer.apply(index_txn, records)
            if len(values) < 2048:
                break
            position = positions[-1] + 1
        txn.put(self.position_key, fmt.pack_u64(until), db=self.meta_db)
        return until

    def reset(self, txn: Any) -> None:
        """Empty every index database and forget the position (a rebuild starts here)."""
        for db in self.dbs.values():
            txn.drop(db, delete=False)
        txn.delete(self.position_key, db=self.meta_db)


def index_range(
    txn: Any, db: Any, lo: bytes, hi: bytes | None, reverse: bool, limit: int | None
) -> list[tuple[bytes, bytes]]:
    """Items with ``lo <= key < hi`` (no upper bound when ``hi`` is None), ascending
    or, with ``reverse``, descending; at most ``limit``."""
    cursor = txn.cursor(db=db)
    found: list[tuple[bytes, bytes]] = []
    if limit is not None and limit <= 0:
        return found
    if not reverse:
        if not cursor.set_range(lo):
            return found
        for key, value in cursor.iternext():
            if hi is not None and key >= hi:
                break
            found.append((key, value))
            if len(found) == limit:
                break
        return found
    # No key >= hi: start at the last key; else step back from the first key >= hi.
    no_key_above = hi is None or not cursor.set_range(hi)
    positioned = cursor.last() if no_key_above else cursor.prev()
    if not positioned:
        return found
    for key, value in cursor.iterprev():
        if key < lo:
            break
        found.append((key, value))
        if len(found) == limit:
            break
    return found


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (None: no bound)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_installable(installed: InstalledIndexer[Any] | None, indexer: Indexer[Any]) -> None:
    if installed is not None and installed.name != indexer.name:
        raise EventStoreError(
            f"this store is open in this process with index {installed.name!r}; "
            f"open it with that index (or none), not {indexer.name!r}"
        )
