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
        self.done = threading.Event()
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
            request.done.set()

    def _write(self, batch: list[AppendRequest]) -> list[Outcome]:
        shared = self._shared
        txn = shared.env.begin(write=True)
        try:
            cursor = txn.cursor(db=shared.events)
            next_position = fmt.unpack_u64(cursor.key()) + 1 if cursor.last() else 1
            now = time.time()
            outcomes: list[Outcome] = []
            for request in batch:
                outcome = self._apply(txn, request, next_position, now)
                if not isinstance(outcome, EventStoreError):
                    next_position += len(outcome)
                outcomes.append(outcome)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        return outcomes

    def _apply(self, txn: Any, request: AppendRequest, first: int, now: float) -> Outcome:
        shared = self._shared
        raw_row = txn.get(request.skey, db=shared.streams)
        try:
            row = fmt.decode_row(raw_row) if raw_row is not None else None
        except msgspec.DecodeError as exc:
            return EventStoreError(f"stream index entry for {request.stream!r} is corrupt: {exc}")
        current = row.version if row is not None else 0
        if request.expected is not None and request.expected != current:
            return ConcurrencyError(request.stream, request.expected, current)
        put = txn.put
        stream, skey = request.stream, request.skey
        for offset, payload in enumerate(request.payloads):
            version = current + 1 + offset
            key = fmt.pack_u64(first + offset)
            value = fmt.encode_event_value(stream, version, now, payload)
            put(key, value, db=shared.events, append=True)
            put(fmt.index_key(skey, version), key, db=shared.streams_index)
        count = len(request.payloads)
        new_row = fmt.StreamRow(
            version=current + count,
            first_position=row.first_position if row is not None else first,
            last_position=first + count - 1,
            created_at=row.created_at if row is not None else now,
            updated_at=now,
        )
        put(skey, fmt.encode_row(new_row), db=shared.streams)
        return list(range(first, first + count))

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
