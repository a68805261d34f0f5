"""``EventStore``: the public face over one shared LMDB environment.

Reads run in the caller's thread in short read transactions of up to
``READ_BATCH`` records, so an iterator never pins a transaction (or a reader
slot, or old pages) while the caller processes events, and never blocks writers.
"""

from __future__ import annotations

import os
import pathlib
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from operator import attrgetter
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

import msgspec

from . import _env, _gaps
from . import _format as fmt
from ._errors import (
    CorruptEventError,
    PayloadTooLargeError,
    StoreClosedError,
    StoreReadOnlyError,
)
from ._index import Indexer, index_range
from ._types import Recorded, StreamInfo
from ._writer import AppendRequest

E = TypeVar("E")

READ_BATCH = 2048
_position_of = attrgetter("position")
Durability = Literal["sync", "relaxed"]


class EventStore(Generic[E]):
    """A durable, append-only log of events of type ``E``, grouped in named streams.

    Thread-safe: any number of threads may append, read and follow through one
    instance; other processes may open the same directory at the same time.
    """

    path: pathlib.Path
    durability: str

    def __init__(
        self, shared: _env.SharedEnv, event_type: Any, max_payload: int, durability: str
    ) -> None:
        """Private: use ``EventStore.open``."""
        self._shared = shared
        self.path = shared.path
        self.durability = durability
        self._max_payload = max_payload
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = fmt.event_decoder(event_type)
        self._event_decoder = msgspec.msgpack.Decoder(event_type)  # what append writes
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        event_type: type[E] | Any,
        *,
        durability: Durability = "sync",
        max_payload: int = 1 << 20,
        create: bool = True,
        indexer: Indexer[E] | None = None,
        readonly: bool = False,
    ) -> EventStore[E]:
        """Open the store in directory ``path``, creating it (0700, files 0600) if allowed.

        ``event_type`` is a msgspec Struct type or a tagged union of them; events
        decode leniently, so Structs may gain fields with defaults. ``sync``
        acknowledges an append once fsynced; ``relaxed`` fsyncs at least every
        100 ms (see docs/eventstore.md for what it can lose). Raises
        StoreFormatError, changing nothing, for anything that is not a store of
        a format this code reads, or a missing store when ``create`` is False;
        CorruptStoreError for a damaged one. ``readonly`` opens an existing
        store without writing a byte (for a directory this process cannot
        write): reads work, ``append`` raises StoreReadOnlyError.

        ``indexer``: kept in step with the log inside every append's transaction
        in this process (whichever handle appends), and caught up here on what the
        log holds beyond it (see eventstore/_index.py); not caught up when read-only.
        """
        if durability not in ("sync", "relaxed"):
            raise ValueError(f"durability must be 'sync' or 'relaxed', got {durability!r}")
        if max_payload < 1:
            raise ValueError(f"max_payload must be positive, got {max_payload}")
        shared = _env.acquire(pathlib.Path(path), durability, create, readonly)
        store = cls(shared, event_type, max_payload, durability)
        if indexer is not None:
            try:
                shared.install(indexer, event_type)
            except BaseException:
                store.close()
                raise
        return store

    # --- writing --------------------------------------------------------------

    def append(
        self, stream: str, events: Sequence[E], expected_version: int | None = None
    ) -> list[int]:
        """Append ``events`` to ``stream`` atomically and return their global positions.

        ``expected_version`` is the stream's version before this append (0 for a
        new stream); a stale one raises ConcurrencyError and writes nothing.
        Runs encoding in the caller's thread, then blocks until the writer
        thread has committed the transaction holding these events.
        """
        self._check_writable()
        skey = fmt.stream_key(stream)
        if expected_version is not None and expected_version < 0:
            raise ValueError(f"expected_version must be >= 0, got {expected_version}")
        if not events:
            return []
        payloads = self._encode(stream, events)
        request = AppendRequest(stream, skey, payloads, expected_version, events)
        self._shared.writer.submit(request)
        request.wait()
        if request.error is not None:
            raise request.error
        return request.positions

    def _encode(self, stream: str, events: Sequence[E]) -> list[bytes]:
        """The events' payloads, each within ``max_payload`` and decoding back as the
        store's event type: msgpack encodes a field of the wrong type (``None`` in a
        ``float``) that every later read would refuse as corrupt."""
        payloads = [self._encoder.encode(event) for event in events]
        for number, payload in enumerate(payloads, 1):
            if len(payload) > self._max_payload:
                raise PayloadTooLargeError(stream, len(payload), self._max_payload)
            try:
                self._event_decoder.decode(payload)
            except msgspec.ValidationError as exc:
                raise ValueError(
                    f"event {number} of {len(events)} for stream {stream!r} would not read "
                    f"back as the store's event type ({exc}); nothing was written"
                ) from None
        return payloads

    # --- reading --------------------------------------------------------------

    def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> Iterator[Recorded[E]]:
        """Yield events in log order from ``from_position`` to ``to_position`` inclusive.

        Without ``to_position`` the iterator stops at the last position that
        existed when iteration started. Positions of removed streams are gaps
        (``remove_streams``) and are skipped; raises CorruptEventError at the first
        record that cannot be decoded or is missing without having been removed.
        """
        self._check_open()
        return self._iter_all(max(1, from_position), to_position)

    def _iter_all(self, position: int, to_position: int | None) -> Iterator[Recorded[E]]:
        # chain keeps the per-event path in C: replay speed is the point.
        return chain.from_iterable(self._batches_all(position, to_position))

    def _batches_all(self, position: int, to_position: int | None) -> Iterator[list[Recorded[E]]]:
        end = self.last_position() if to_position is None else to_position
        while position <= end:
            batch = self._read_batch(position, min(READ_BATCH, end - position + 1), end)
            if not batch:
                return
            yield batch
            position = batch[-1].position + 1

    def read_stream(self, stream: str, from_version: int = 1) -> Iterator[Recorded[E]]:
        """Yield ``stream``'s events in version order from ``from_version``.

        Stops at the stream's version when iteration started; an unknown stream
        yields nothing.
        """
        self._check_open()
        return self._iter_stream(stream, fmt.stream_key(stream), max(1, from_version))

    def _iter_stream(self, stream: str, skey: bytes, version: int) -> Iterator[Recorded[E]]:
        end = self.stream_version(stream)
        prefix = skey + b"\0"
        events_db, index_db = self._shared.events, self._shared.streams_index

        def read(txn: Any) -> tuple[list[int], list[bytes]]:
            # Looked up by key, never by stepping a cursor: see _read_batch.
            versions = range(version, min(end, version + READ_BATCH - 1) + 1)
            keys = [prefix + fmt.pack_u64(v) for v in versions]
            found = txn.cursor(db=index_db).getmulti(keys)
            if len(found) != len(keys):
                got = {key for key, _ in found}
                lacking = next(v for v, k in zip(versions, keys, strict=True) if k not in got)
                raise CorruptEventError(0, f"stream {stream!r} index lacks version {lacking}")
            pkeys = [pkey for _, pkey in found]
            positions = [self._unpack_position(pkey) for pkey in pkeys]
            return positions, _values_at(txn.cursor(db=events_db), pkeys, positions)

        while version <= end:
            positions, values = self._shared.read(read)
            if not positions:
                return
            self._check_open()
            for offset, recorded in enumerate(self._decode(positions, values)):
                if recorded.stream != stream or recorded.version != version + offset:
                    raise CorruptEventError(
                        recorded.position, f"indexed as {stream!r} v{version + offset}"
                    )
                yield recorded
            version += len(positions)

    def follow(
        self,
        from_position: int = 1,
        *,
        stop: threading.Event | None = None,
        poll_interval: float = 0.01,
        gather: float = 0.0,
    ) -> Iterator[Recorded[E]]:
        """Yield every event from ``from_position`` on, waiting for new ones forever.

        Appends through this process wake an idle follower at once; appends by
        other processes are noticed by a cheap check every ``poll_interval``
        seconds. ``gather``: after reading new events, wait that long before the
        next read, so that a busy log is read in batches instead of waking the
        follower on every commit (where it competes for the GIL with the
        appenders). Ends when ``stop`` is set or the store is closed. Runs (and
        blocks) in the consuming thread.
        """
        self._check_open()
        return self._iter_follow(max(1, from_position), stop, poll_interval, gather)

    def _iter_follow(
        self, position: int, stop: threading.Event | None, poll_interval: float, gather: float
    ) -> Iterator[Recorded[E]]:
        writer = self._shared.writer
        while not self._closed and not (stop is not None and stop.is_set()):
            with writer.commit_cv:
                seen = writer.commit_seq
            try:
                batch = self._read_batch(position, READ_BATCH)
            except StoreClosedError:
                return
            for recorded in batch:
                if self._closed or (stop is not None and stop.is_set()):
                    return
                yield recorded
            if batch:
                position = batch[-1].position + 1
                if gather > 0 and len(batch) < READ_BATCH:  # caught up: let commits gather
                    if stop is None:
                        time.sleep(gather)
                    elif stop.wait(gather):
                        return
                continue
            with writer.commit_cv:
                if writer.commit_seq == seen and not self._closed:
                    writer.commit_cv.wait(poll_interval)

    def _read_batch(self, start: int, limit: int, end: int | None = None) -> list[Recorded[E]]:
        """Read and decode up to ``limit`` records from ``start`` (to ``end``) in one
        read txn, skipping recorded gaps."""
        events_db, pruned_db = self._shared.events, self._shared.pruned

        def read(txn: Any) -> tuple[Sequence[int], list[bytes]]:
            cursor = txn.cursor(db=events_db)
            if not cursor.last():
                return (), []
            top = self._unpack_position(cursor.key())
            if end is not None:
                top = min(top, end)
            count = min(limit, top - start + 1)
            if count <= 0:
                return (), []
            # By key, not by stepping the cursor: stepping onto the next page
            # trusts it (a zeroed page there is an LMDB assertion, SIGABRT), a
            # lookup checks each page's type on the way down (MDB_CORRUPTED).
            # Keys in one page are found without leaving it, so this is as fast.
            positions = range(start, start + count)
            found = cursor.getmulti([fmt.pack_u64(p) for p in positions])
            if len(found) == count:  # the common, gapless case
                return positions, [value for _, value in found]
            return _gaps.read_range(txn, cursor, pruned_db, start, top, limit)

        self._check_open()
        positions, values = self._shared.read(read)
        if not values:
            return []
        return self._decode(positions, values)

    def read_positions(self, positions: Sequence[int]) -> list[Recorded[E]]:
        """The events at these global positions, in that order, read in one transaction
        (one LMDB call for all of them: cheap even while other threads hold the GIL)."""
        self._check_open()
        if not positions:
            return []
        keys = [fmt.pack_u64(p) for p in positions]
        events_db = self._shared.events
        values = self._shared.read(lambda txn: _values_at(txn.cursor(events_db), keys, positions))
        return self._decode(positions, values)

    def _decode(self, positions: Sequence[int], values: list[bytes]) -> list[Recorded[E]]:
        """Decode a batch straight into ``Recorded`` (``map`` keeps the loop in C;
        cheaper than decoding the joined values, which costs a copy); on failure,
        find the culprit's position."""
        try:
            rows: list[Recorded[E]] = list(map(self._decoder.decode, values))
        except msgspec.DecodeError:
            for position, value in zip(positions, values, strict=True):
                try:
                    self._decoder.decode(value)
                except msgspec.DecodeError as exc:
                    raise CorruptEventError(position, str(exc)) from exc
            raise CorruptEventError(positions[0], "batch does not decode") from None
        stored_positions = list(map(_position_of, rows))
        if stored_positions != list(positions):
            bad = next(p for p, q in zip(positions, stored_positions, strict=True) if p != q)
            raise CorruptEventError(bad, "the record stored there names another position")
        return rows

    @staticmethod
    def _unpack_position(key: bytes) -> int:
        try:
            return fmt.unpack_u64(key)
        except struct.error:
            raise CorruptEventError(0, f"malformed position key {key!r}") from None

    # --- metadata -------------------------------------------------------------

    def stream_version(self, stream: str) -> int:
        """The stream's current version; 0 if it does not exist."""
        info = self.stream_info(stream)
        return 0 if info is None else info.version

    def last_position(self) -> int:
        """The highest global position given out (a removed one counts); 0 for an
        empty store. A cheap read txn."""
        self._check_open()
        shared = self._shared
        return shared.read(lambda txn: _gaps.last_position(txn, shared.events, shared.pruned))

    def position_at(self, at: float, key: Callable[[Recorded[E]], float] | None = None) -> int:
        """The first position whose record has ``key(record) >= at`` (default key:
        ``recorded_at``), by binary search: assumes the key never decreases along
        the log, as the time of append does (to the clock's honesty). Returns
        ``last_position() + 1`` when no record qualifies. O(log n) reads."""
        self._check_open()
        time_of = key if key is not None else attrgetter("recorded_at")
        lo, hi = 1, self.last_position() + 1
        while lo < hi:
            mid = (lo + hi) // 2
            found = self._first_at_or_after(mid, hi)
            if found is None or time_of(found) >= at:
                hi = mid
            else:
                lo = found.position + 1
        found = self._first_at_or_after(lo, lo + READ_BATCH)
        return lo if found is None else found.position

    def _first_at_or_after(self, position: int, below: int) -> Recorded[E] | None:
        events_db = self._shared.events

        def read(txn: Any) -> tuple[int, bytes] | None:
            cursor = txn.cursor(db=events_db)
            if not cursor.set_range(fmt.pack_u64(position)):
                return None
            found = self._unpack_position(cursor.key())
            return (found, cursor.value()) if found < below else None

        row = self._shared.read(read)
        return None if row is None else self._decode([row[0]], [row[1]])[0]

    # --- removal --------------------------------------------------------------

    def remove_streams(
        self, streams: Sequence[str], tombstone_stream: str, tombstone: Sequence[E]
    ) -> list[int]:
        """Remove ``streams`` (every event, its index entries and metadata) and append
        ``tombstone`` to ``tombstone_stream``, in one write transaction; return the
        tombstone's positions. The removed positions become gaps that every reader
        skips; positions are never reused. Streams that do not exist are skipped,
        so a repeated removal is harmless. Readers iterating meanwhile see each
        stream whole or not at all per read batch (removal is one transaction).
        """
        self._check_open()
        skeys = [fmt.stream_key(stream) for stream in streams]
        tkey = fmt.stream_key(tombstone_stream)
        if tkey in skeys:
            raise ValueError(f"cannot remove the tombstone's own stream {tombstone_stream!r}")
        if not tombstone:
            raise ValueError("a removal needs a tombstone event")
        return self._remove_then_append(skeys, tombstone_stream, tombstone)

    def replace_stream(self, stream: str, events: Sequence[E]) -> list[int]:
        """Remove every event of ``stream`` and append ``events`` to it from version 1,
        in one write transaction; return their positions.

        For a stream that holds state rather than history, kept short by writing what
        still holds in place of everything before it. The old positions become gaps, as
        with ``remove_streams``; the stream's version starts again from 1, so a reader
        must not compare its versions across a replacement.
        """
        if not events:
            raise ValueError("a replacement needs at least one event")
        return self._remove_then_append([fmt.stream_key(stream)], stream, events)

    def _remove_then_append(
        self, skeys: list[bytes], stream: str, events: Sequence[E]
    ) -> list[int]:
        """Remove the streams ``skeys``, then append ``events`` to ``stream``, in one commit."""
        self._check_writable()
        payloads = self._encode(stream, events)
        request = AppendRequest(stream, fmt.stream_key(stream), payloads, None, events)
        self._shared.writer.remove_streams(skeys, request)
        request.wait()
        if request.error is not None:
            raise request.error
        return request.positions

    def removed_positions(self) -> int:
        """How many positions are gaps (removed with their streams)."""
        self._check_open()
        pruned_db = self._shared.pruned
        return self._shared.read(lambda txn: _gaps.removed_count(txn, pruned_db))

    def stream_info(self, stream: str) -> StreamInfo | None:
        """The stream's metadata from the streams index, or None if it does not exist."""
        self._check_open()
        skey = fmt.stream_key(stream)
        raw = self._shared.read(lambda txn: txn.get(skey, db=self._shared.streams))
        return None if raw is None else _info(skey, raw)

    def streams(self, prefix: str = "") -> list[StreamInfo]:
        """Every stream whose name starts with ``prefix``, sorted by utf-8 name."""
        self._check_open()
        bprefix = prefix.encode("utf-8")
        streams_db = self._shared.streams

        def read(txn: Any) -> list[tuple[bytes, bytes]]:
            cursor = txn.cursor(db=streams_db)
            rows: list[tuple[bytes, bytes]] = []
            if not cursor.set_range(bprefix):
                return rows
            for key, value in cursor:
                if not key.startswith(bprefix):
                    break
                rows.append((key, value))
            return rows

        return [_info(key, raw) for key, raw in self._shared.read(read)]

    # --- indexes --------------------------------------------------------------

    def index_range(
        self,
        db: str,
        lo: bytes,
        hi: bytes | None = None,
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """Items of index database ``db`` with ``lo <= key < hi`` (``hi`` None: no upper
        bound), ascending or descending, at most ``limit``, from one read transaction."""
        self._check_open()
        handle = self._index_db(db)
        return self._shared.read(lambda txn: index_range(txn, handle, lo, hi, reverse, limit))

    def index_get(self, db: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values under ``keys`` in index database ``db`` (None where absent)."""
        self._check_open()
        handle = self._index_db(db)
        return self._shared.read(lambda txn: [txn.get(k, db=handle) for k in keys])

    def index_position(self) -> int:
        """The last log position the store's index has seen (0 without an index)."""
        installed = self._shared.indexer
        if installed is None:
            return 0
        return self._shared.read(installed.position)

    def catch_up_index(self) -> None:
        """Index what other processes appended without the index (done on open)."""
        self._check_open()
        self._shared.writer.catch_up_index()

    def rebuild_index(self) -> None:
        """Empty the store's index and build it again from the log alone."""
        self._check_open()
        self._shared.writer.rebuild_index()

    def _index_db(self, db: str) -> Any:
        installed = self._shared.indexer
        if installed is None or db not in installed.dbs:
            raise ValueError(f"no index database {db!r}: open the store with its indexer")
        return installed.dbs[db]

    # --- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        """Close this handle; the last handle in the process commits queued appends,
        fsyncs (relaxed mode) and closes LMDB. Idempotent; ends followers."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        writer = self._shared.writer
        with writer.commit_cv:
            writer.commit_cv.notify_all()
        _env.release(self._shared)

    def __enter__(self) -> EventStore[E]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventStore {str(self.path)!r} {self.durability} {state}>"

    def _check_writable(self) -> None:
        """Raise unless this handle may write: open, not read-only, not found damaged."""
        self._check_open()
        if self._shared.readonly:
            raise StoreReadOnlyError(
                f"event store {str(self.path)!r} is open read-only; nothing was written"
            )
        if self._shared.damage is not None:
            raise self._shared.damage

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"event store {str(self.path)!r} is closed")


def _info(skey: bytes, raw: bytes) -> StreamInfo:
    try:
        row = fmt.decode_row(raw)
    except msgspec.DecodeError as exc:
        name = skey.decode("utf-8", "replace")
        raise CorruptEventError(0, f"stream index entry for {name!r} is corrupt: {exc}") from exc
    return StreamInfo(
        skey.decode("utf-8"),
        row.version,
        row.first_position,
        row.last_position,
        row.created_at,
        row.updated_at,
    )


def _values_at(cursor: Any, keys: list[bytes], positions: Sequence[int]) -> list[bytes]:
    """The values under ``keys`` (one LMDB call); a missing one is corruption."""
    found = cursor.getmulti(keys)
    if len(found) != len(keys):
        got = {key for key, _ in found}
        missing = next(p for p, k in zip(positions, keys, strict=True) if k not in got)
        raise CorruptEventError(missing, "missing from the log")
    return [value for _, value in found]
