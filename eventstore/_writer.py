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
from typing import TYPE_CHECKING, Any

import lmdb
import msgspec

from . import _format as fmt
from ._errors import ConcurrencyError, EventStoreError, StoreClosedError

if TYPE_CHECKING:
    from ._env import SharedEnv

MAX_BATCH_REQUESTS = 4096
MAX_BATCH_BYTES = 32 << 20
FLUSH_INTERVAL = 0.05
"""Relaxed mode: seconds between fsyncs, half the documented 100 ms bound."""


class AppendRequest:
    """One caller's append, handed to the writer thread and back."""

    __slots__ = ("done", "error", "expected", "payloads", "positions", "size", "skey", "stream")

    def __init__(
        self, stream: str, skey: bytes, payloads: list[bytes], expected: int | None
    ) -> None:
        self.stream = stream
        self.skey = skey
        self.payloads = payloads
        self.expected = expected
        self.size = sum(map(len, payloads))
        self.done = threading.Lock()
        self.done.acquire()  # released by the writer thread once the outcome is set
        self.positions: list[int] = []
        self.error: EventStoreError | None = None


Outcome = list[int] | EventStoreError


class Writer:
    """The writer thread, the relaxed-mode flusher, and the commit signal for followers."""

    def __init__(self, shared: SharedEnv) -> None:
        self._shared = shared
        self._queue: deque[AppendRequest] = deque()
        self._queue_cv = threading.Condition(threading.Lock())
        self._closed = False
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
        """Queue an append (runs in the caller's thread; does not wait)."""
        with self._queue_cv:
            if self._closed:
                raise StoreClosedError(f"event store {str(self._shared.path)!r} is closed")
            self._queue.append(request)
            self._queue_cv.notify()

    def close(self) -> None:
        """Commit what is queued, stop the threads, and fsync (runs in the closer's thread)."""
        with self._queue_cv:
            self._closed = True
            self._queue_cv.notify()
        self._thread.join()
        self._stop_flusher.set()
        if self._flusher is not None:
            self._flusher.join()
        with self._shared.guard.shared():
            self._shared.env.sync(True)
        with self.commit_cv:
            self.commit_seq += 1
            self.commit_cv.notify_all()

    # --- writer thread -------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._queue_cv:
                while not self._queue and not self._closed:
                    self._queue_cv.wait()
                if not self._queue:
                    return
                batch = [self._queue.popleft()]
                size = batch[0].size
                while (
                    self._queue
                    and len(batch) < MAX_BATCH_REQUESTS
                    and size + self._queue[0].size <= MAX_BATCH_BYTES
                ):
                    request = self._queue.popleft()
                    size += request.size
                    batch.append(request)
            self._commit(batch)

    def _commit(self, batch: list[AppendRequest]) -> None:
        outcomes: list[Outcome]
        while True:
            try:
                with self._shared.guard.shared():
                    outcomes = self._write(batch)
                break
            except lmdb.MapFullError:
                self._shared.grow_map()
            except lmdb.MapResizedError:
                self._shared.adopt_map_size()
            except Exception as exc:  # deliver, never let the writer thread die
                outcomes = [_failed(exc) for _ in batch]
                break
        with self.commit_cv:
            self.commit_seq += 1
            self.commit_cv.notify_all()
        for request, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, EventStoreError):
                request.error = outcome
            else:
                request.positions = outcome
            request.done.release()

    def _write(self, batch: list[AppendRequest]) -> list[Outcome]:
        """Build the whole batch in Python, then hand it to LMDB in few C calls.

        py-lmdb releases the GIL around every put, and each reacquisition
        competes with the appender threads, so fewer calls keep the writer moving.
        """
        shared = self._shared
        txn = shared.env.begin(write=True)
        try:
            cursor = txn.cursor(db=shared.events)
            position = fmt.unpack_u64(cursor.key()) + 1 if cursor.last() else 1
            now = time.time()
            rows: dict[bytes, fmt.StreamRow | None] = {}
            changed: dict[bytes, fmt.StreamRow] = {}
            event_items: list[tuple[bytes, bytes]] = []
            index_items: list[tuple[bytes, bytes]] = []
            outcomes: list[Outcome] = []
            for request in batch:
                skey = request.skey
                if skey in rows:
                    row = rows[skey]
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
                for payload in request.payloads:
                    current += 1
                    key = fmt.pack_u64(position)
                    value = fmt.encode_event_value(position, request.stream, current, now, payload)
                    event_items.append((key, value))
                    index_items.append((fmt.index_key(skey, current), key))
                    position += 1
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
                _put_all(txn.cursor(db=shared.streams_index), index_items, append=False)
                rows_items = [(skey, fmt.encode_row(changed[skey])) for skey in sorted(changed)]
                _put_all(txn.cursor(db=shared.streams), rows_items, append=False)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        return outcomes

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
