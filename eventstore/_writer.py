"""Group commit: one writer thread per open environment turns the appends queued
by any number of threads into one LMDB write transaction.

Each append is checked on its own inside the shared transaction *before* any of
its records are written, so a stale ``expected_version`` fails that append alone;
callers are released only after the transaction that holds their records has
committed (and, in ``sync`` mode, been fsynced by LMDB).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import lmdb
import msgspec

from . import _format as fmt
from . import _gaps
from ._errors import ConcurrencyError, EventStoreError, StoreClosedError
from ._index import CATCH_UP_BATCH
from ._types import Recorded

if TYPE_CHECKING:
    from ._env import SharedEnv

MAX_BATCH_REQUESTS = 4096
MAX_BATCH_BYTES = 32 << 20
MAX_CACHED_ROWS = 1 << 16
"""Above this many cached stream rows the cache starts afresh (bounds its memory)."""
FLUSH_INTERVAL = 0.05
"""Relaxed mode: seconds between fsyncs, half the documented 100 ms bound."""


class AppendRequest:
    """One caller's append, handed to the writer thread and back.

    Callers are woken in a chain rather than all at once: the writer releases
    the first request of a committed batch and each woken caller releases the
    next (``wake_chain``). Waking a whole batch at once makes dozens of threads
    fight for the GIL, and that herd, not the disk, bounded throughput (see
    docs/eventstore.md).
    """

    __slots__ = (
        "abandoned",
        "done",
        "error",
        "events",
        "expected",
        "next",
        "payloads",
        "positions",
        "size",
        "skey",
        "stream",
    )

    def __init__(
        self,
        stream: str,
        skey: bytes,
        payloads: list[bytes],
        expected: int | None,
        events: Sequence[Any] = (),
    ) -> None:
        self.stream = stream
        self.events = events
        """The events themselves, handed to the store's indexer once positioned."""
        self.skey = skey
        self.payloads = payloads
        self.expected = expected
        self.size = sum(map(len, payloads))
        self.done = threading.Lock()
        self.done.acquire()  # released once the outcome is set (see wake_chain)
        self.positions: list[int] = []
        self.error: EventStoreError | None = None
        self.next: AppendRequest | None = None
        """The request to wake after this one, set by the writer before it wakes any."""
        self.abandoned = False
        """The caller stopped waiting (an exception such as KeyboardInterrupt)."""

    def wait(self) -> None:
        """Block until the outcome is set, then wake the next caller in the chain.

        If the wait is interrupted, the chain must not break: whichever of this
        caller and its predecessor wins ``done.acquire(False)`` carries it on.
        """
        try:
            self.done.acquire()
        except BaseException:
            self.abandoned = True
            if self.done.acquire(False):
                wake_chain(self.next)
            raise
        wake_chain(self.next)


def wake_chain(request: AppendRequest | None) -> None:
    """Wake ``request``'s caller, or, past callers that abandoned, the first that waits."""
    while request is not None:
        request.done.release()
        if not request.abandoned or not request.done.acquire(False):
            return
        request = request.next


Outcome = list[int] | EventStoreError


class Writer:
    """The writer thread, the relaxed-mode flusher, and the commit signal for followers."""

    def __init__(self, shared: SharedEnv) -> None:
        self._shared = shared
        self._queue: deque[AppendRequest] = deque()
        self._queue_cv = threading.Condition(threading.Lock())
        self._closed = False
        self._idle = False
        """True while the writer sleeps on ``_queue_cv``; only then do appenders notify."""
        self._stopped = False
        self._commit_lock = threading.Lock()
        """Held by whoever commits: the writer thread, or a caller in ``submit``."""
        self._rows: dict[bytes, fmt.StreamRow | None] = {}
        """Committed ``streams`` rows, valid while the log's last position is ``_rows_as_of``."""
        self._rows_as_of = -1
        self._committed: AppendRequest | None = None
        """First request of the last committed batch whose callers still sleep."""
        self.commit_cv = threading.Condition(threading.Lock())
        """Notified after every commit; followers in this process wait on it."""
        self.commit_seq = 0
        self._synced_seq = 0
        self._stop_flusher = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"eventstore-writer:{shared.path}", daemon=True
        )
        self._thread.start()
        self._flusher: threading.Thread | None = None
        if shared.durability == "relaxed":
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"eventstore-flusher:{shared.path}", daemon=True
            )
            self._flusher.start()

    def submit(self, request: AppendRequest) -> None:
        """Commit a lone append at once, or queue it (runs in the caller's thread).

        When no append is queued and no commit is under way, the caller commits
        its request itself: a lone appender (one workflow run) then pays for no
        thread hand-off. Otherwise the request is queued for the writer thread,
        which commits it with whatever else has queued meanwhile.

        Lock-free while the writer is busy: ``deque.append`` is atomic, and the
        writer only sleeps on ``_queue_cv`` after setting ``_idle`` and finding the
        queue empty, so a caller that sees ``_idle`` false knows the writer will
        see its request. A request queued after the writer stopped is failed here.
        """
        if self._closed:
            raise StoreClosedError(f"event store {str(self._shared.path)!r} is closed")
        if not self._queue and self._commit_lock.acquire(blocking=False):
            try:  # nobody else is appending: commit here, two thread hand-offs fewer
                if self._closed:
                    raise StoreClosedError(f"event store {str(self._shared.path)!r} is closed")
                self._commit([request])
                self._wake_committed()
            finally:
                self._commit_lock.release()
            return
        self._queue.append(request)
        if self._idle:
            with self._queue_cv:
                self._queue_cv.notify()
        if self._stopped:
            self._fail_queued()

    def close(self) -> None:
        """Commit what is queued, stop the threads, and fsync (runs in the closer's thread)."""
        with self._queue_cv:
            self._closed = True
            self._queue_cv.notify()
        self._thread.join()
        with self._commit_lock:  # a caller's own commit, if one is under way, ends first
            pass
        self._stop_flusher.set()
        if self._flusher is not None:
            self._flusher.join()
        if not self._shared.readonly:
            with self._shared.guard.shared():
                self._shared.env.sync(True)
        with self.commit_cv:
            self.commit_seq += 1
            self.commit_cv.notify_all()

    # --- writer thread -------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                with self._commit_lock:
                    self._wake_committed()
                with self._queue_cv:
                    self._idle = True
                    while not queue and not self._closed:
                        self._queue_cv.wait()
                    self._idle = False
                if not queue:
                    break  # closed, and everything queued before was committed
            with self._commit_lock:
                batch = [queue.popleft()]
                size = batch[0].size
                while (
                    queue
                    and len(batch) < MAX_BATCH_REQUESTS
                    and size + queue[0].size <= MAX_BATCH_BYTES
                ):
                    request = queue.popleft()
                    size += request.size
                    batch.append(request)
                self._commit(batch)
        with self._commit_lock:
            self._wake_committed()
        self._stopped = True
        self._fail_queued()

    def _fail_queued(self) -> None:
        """Release, with StoreClosedError, requests that raced with close()."""
        while True:
            try:
                request = self._queue.popleft()
            except IndexError:
                return
            request.error = StoreClosedError(f"event store {str(self._shared.path)!r} is closed")
            wake_chain(request)

    def remove_streams(self, skeys: Sequence[bytes], tombstone: AppendRequest) -> None:
        """Remove the streams ``skeys`` (events, index entries, rows) and append
        ``tombstone`` in the same transaction: both are durable or neither is.
        Runs in the caller's thread; streams that do not exist are skipped."""
        if self._closed:
            raise StoreClosedError(f"event store {str(self._shared.path)!r} is closed")
        shared = self._shared

        def remove(txn: Any) -> None:
            positions: list[int] = []
            index_cursor = txn.cursor(db=shared.streams_index)
            for skey in skeys:
                if txn.get(skey, db=shared.streams) is None:
                    continue
                prefix = skey + b"\0"
                if index_cursor.set_range(prefix):
                    while index_cursor.key().startswith(prefix):
                        position = index_cursor.value()
                        positions.append(fmt.unpack_u64(position))
                        txn.delete(position, db=shared.events)
                        if not index_cursor.delete():
                            break
                txn.delete(skey, db=shared.streams)
            positions.sort()
            _gaps.record(txn, shared.pruned, positions)

        with self._commit_lock:
            self._rows.clear()
            self._rows_as_of = -1
            self._commit([tombstone], before=remove)
            self._rows.clear()  # the removed streams' rows must not stay cached
            self._rows_as_of = -1
            self._wake_committed()

    def _commit(
        self, batch: list[AppendRequest], before: Callable[[Any], None] | None = None
    ) -> None:
        """Commit ``batch`` and leave its callers in ``_committed`` to be woken.

        The callers of the previous batch are woken only once this batch is
        built, just before its commit (``_write`` calls ``_wake_committed``):
        building makes one LMDB call per record and each call gives up the GIL,
        so woken callers running at the same time would stretch the build;
        during the commit itself (the fsync) the GIL is free for them.
        """
        outcomes: list[Outcome]
        while True:
            try:
                with self._shared.guard.shared():
                    outcomes = self._write(batch, before)
                break
            except lmdb.MapFullError:
                self._wake_committed()
                self._shared.grow_map()
            except lmdb.MapResizedError:
                self._wake_committed()
                self._shared.adopt_map_size()
            except lmdb.Error as exc:  # damage, disk, permissions: named by the store
                error = self._shared.damaged(exc)
                outcomes = [error for _ in batch]
                break
            except Exception as exc:  # deliver, never let the writer thread die
                outcomes = [_failed(exc) for _ in batch]
                break
        self._wake_committed()
        with self.commit_cv:
            self.commit_seq += 1
            self.commit_cv.notify_all()
        previous: AppendRequest | None = None
        for request, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, EventStoreError):
                request.error = outcome
            else:
                request.positions = outcome
            if previous is not None:
                previous.next = request
            previous = request
        self._committed = batch[0]

    def _wake_committed(self) -> None:
        """Wake the callers of the last committed batch, if not done yet."""
        first = self._committed
        if first is not None:
            self._committed = None
            wake_chain(first)

    def _write(
        self, batch: list[AppendRequest], before: Callable[[Any], None] | None = None
    ) -> list[Outcome]:
        """Build the whole batch in Python, then hand it to LMDB in few C calls.

        py-lmdb releases the GIL around every LMDB call, and each reacquisition
        competes with the appender threads, so the writer makes as few as it can:
        stream versions come from ``_rows``, a cache of committed ``streams``
        rows, whenever the log's last position shows that no other process
        committed since this writer's last commit (every commit adds a position,
        and only appends write ``streams``); otherwise the cache is dropped and
        rows are read inside this transaction.
        """
        shared = self._shared
        txn = shared.env.begin(write=True)
        try:
            if before is not None:
                before(txn)
            cursor = txn.cursor(db=shared.events)
            cursor.last()  # appends go after the last key ...
            last = _gaps.last_position(txn, shared.events, shared.pruned)  # ... and any gap
            cache = self._rows
            if last != self._rows_as_of or len(cache) > MAX_CACHED_ROWS:
                cache.clear()
            position = last + 1
            now = time.time()
            rows: dict[bytes, fmt.StreamRow | None] = {}
            changed: dict[bytes, fmt.StreamRow] = {}
            event_items: list[tuple[bytes, bytes]] = []
            index_items: list[tuple[bytes, bytes]] = []
            outcomes: list[Outcome] = []
            indexer = shared.indexer
            records: list[Recorded[Any]] = []
            pack_u64, encode_value, index_key = fmt.pack_u64, fmt.encode_event_value, fmt.index_key
            for request in batch:
                skey = request.skey
                if skey in rows:
                    row = rows[skey]
                elif skey in cache:
                    row = cache[skey]
                else:
                    raw_row = txn.get(skey, db=shared.streams)
                    try:
                        row = None if raw_row is None else fmt.decode_row(raw_row)
                    except msgspec.DecodeError as exc:
                        outcomes.append(
                            EventStoreError(f"stream index of {request.stream!r} is corrupt: {exc}")
                        )
                        continue
                current = 0 if row is None else row.version
                if request.expected is not None and request.expected != current:
                    rows[skey] = row
                    outcomes.append(ConcurrencyError(request.stream, request.expected, current))
                    continue
                first = position
                stream = request.stream
                for payload in request.payloads:
                    current += 1
                    key = pack_u64(position)
                    event_items.append((key, encode_value(position, stream, current, now, payload)))
                    index_items.append((index_key(skey, current), key))
                    position += 1
                if indexer is not None:
                    records.extend(
                        Recorded(first + i, stream, current - len(request.payloads) + 1 + i, now, e)
                        for i, e in enumerate(request.events)
                    )
                rows[skey] = changed[skey] = fmt.StreamRow(
                    version=current,
                    first_position=first if row is None else row.first_position,
                    last_position=position - 1,
                    created_at=now if row is None else row.created_at,
                    updated_at=now,
                )
                outcomes.append(list(range(first, position)))
            if event_items:
                _put_all(cursor, event_items, append=True)
                if len(index_items) > 1:
                    index_items.sort()
                _put_all(txn.cursor(db=shared.streams_index), index_items, append=False)
                rows_items = [(skey, fmt.encode_row(changed[skey])) for skey in sorted(changed)]
                _put_all(txn.cursor(db=shared.streams), rows_items, append=False)
            if indexer is not None:
                indexer.apply(txn, last, records, shared.events, shared.pruned)
            self._wake_committed()
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        # Only now is the batch's view the committed state the cache describes.
        cache.update(rows)
        self._rows_as_of = position - 1
        return outcomes

    # --- the index ----------------------------------------------------------

    def catch_up_index(self) -> None:
        """Index what the log holds beyond the index's position, ``CATCH_UP_BATCH``
        events per transaction (each records how far it got: a crash loses nothing).
        Runs in the caller's thread; a read transaction only, when nothing is behind."""
        shared = self._shared
        installed = shared.indexer
        if installed is None:
            return

        def last(txn: Any) -> int:
            return _gaps.last_position(txn, shared.events, shared.pruned)

        def behind(txn: Any) -> bool:
            return installed.position(txn) < last(txn)

        def step(txn: Any) -> None:
            seen = installed.position(txn)
            until = min(last(txn), seen + CATCH_UP_BATCH)
            if seen < until:
                installed.catch_up(txn, shared.events, seen, until, shared.pruned)

        while shared.read(behind):
            with self._commit_lock:
                self._in_write_txn(step)

    def rebuild_index(self) -> None:
        """Empty the index and build it again from the whole log (caller's thread)."""
        installed = self._shared.indexer
        if installed is None:
            raise EventStoreError("this store was opened without an index to rebuild")
        with self._commit_lock:
            self._in_write_txn(installed.reset)
        self.catch_up_index()

    def _in_write_txn(self, fn: Callable[[Any], None]) -> None:
        """Run ``fn`` in a write transaction and commit; grow or adopt the map as
        needed. The caller holds ``_commit_lock``."""
        shared = self._shared
        while True:
            try:
                with shared.guard.shared():
                    txn = shared.env.begin(write=True)
                    try:
                        fn(txn)
                        txn.commit()
                    except BaseException:
                        txn.abort()
                        raise
                return
            except lmdb.MapFullError:
                shared.grow_map()
            except lmdb.MapResizedError:
                shared.adopt_map_size()

    # --- flusher thread (relaxed mode) --------------------------------------

    def _flush_loop(self) -> None:
        while not self._stop_flusher.wait(FLUSH_INTERVAL):
            seq = self.commit_seq
            if seq != self._synced_seq:
                with self._shared.guard.shared():
                    self._shared.env.sync(True)
                self._synced_seq = seq


def _failed(exc: Exception) -> EventStoreError:
    error = EventStoreError(f"append failed, nothing was written: {exc!r}")
    error.__cause__ = exc
    return error


def _put_all(cursor: Any, items: list[tuple[bytes, bytes]], *, append: bool) -> None:
    consumed, added = cursor.putmulti(items, append=append)
    if consumed != len(items) or (append and added != len(items)):
        raise EventStoreError(f"LMDB took {added} of {len(items)} records (append={append})")
