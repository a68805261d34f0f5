"""The run index: which runs exist, their status, workflow and times, without folding.

Written by the event store inside the same write transaction as the events
that change it (an `eventstore.Indexer`), not derived afterwards: so it can
never disagree with the log after a crash, and every process that appends
through a store opened with it (engine, CLI commands) keeps it right without
a second moving part. Appends made without it (older code, tools) leave the
store's recorded index position behind, and are caught up on the next open or
indexed append; `rebuild_index` rebuilds it from the log alone.

Two databases:

* `runs`: run id -> `RunSummary` (msgpack), folded from run-level events only
  (`summarize`, which mirrors the run transitions of `evolve`).
* `run_keys`: sortable keys, value empty. `T` is the submission time in
  microseconds, 8-byte big-endian, then the run id, so that a reverse scan is
  newest first and a cursor is the key of the last run shown:
  `t T` every run; `s STATUS\\0 T`; `w WORKFLOW\\0 T`; `x WORKFLOW\\0 STATUS\\0 T`;
  and `c RUN\\0 POSITION` for every operator command (recovery delivers a run's
  commands logged after its last event, without reading every command ever);
  `p RUN` -> archive path for every run removed by `wfa prune` (`RunsPruned`),
  whose row and other keys go in the same transaction.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from engine.rules.events import (
    COMMANDS_STREAM,
    RUN_STREAM_PREFIX,
    CommandIssued,
    Event,
    RunCancelled,
    RunFailed,
    RunPaused,
    RunResumed,
    RunsPruned,
    RunStarted,
    RunSubmitted,
    RunSucceeded,
    RunTimedOut,
    iso,
)
from engine.rules.state import TERMINAL_RUN, RunStatus
from eventstore import EventLog, EventStore, IndexTxn, Recorded

INDEX_NAME: Final = "runs"
ROWS: Final = "runs"
KEYS: Final = "run_keys"
OPEN_STATUSES: Final = tuple(s for s in RunStatus if s not in TERMINAL_RUN)

_U64 = struct.Struct(">Q")
_ENDED: Final[dict[type[Any], RunStatus]] = {
    RunSucceeded: RunStatus.SUCCEEDED,
    RunFailed: RunStatus.FAILED,
    RunCancelled: RunStatus.CANCELLED,
    RunTimedOut: RunStatus.TIMED_OUT,
}
RUN_LEVEL: Final[tuple[type[Any], ...]] = (
    RunSubmitted,
    RunStarted,
    RunPaused,
    RunResumed,
    *_ENDED,
)


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What listing and recovery need to know about a run, kept current by the index."""

    run_id: str
    workflow: str
    status: RunStatus
    priority: int
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The `wfa runs --json` object (README, Machine output)."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status.value,
            "submitted_at": iso(self.submitted_at),
            "ended_at": iso(self.ended_at),
        }


_encode = msgspec.msgpack.Encoder().encode
_decode_row = msgspec.msgpack.Decoder(RunSummary).decode


def summarize(row: RunSummary | None, event: Event) -> RunSummary | None:
    """The run's summary after `event` (pure): what a fold of its stream would say
    about status, times and reason. Events that are not about the run's lifecycle
    leave it as it is."""
    replace = msgspec.structs.replace
    if row is None:
        if isinstance(event, RunSubmitted):
            return RunSummary(
                run_id=event.run_id,
                workflow=event.spec.name,
                status=RunStatus.QUEUED,
                priority=event.spec.priority,
                submitted_at=event.at,
            )
        return None
    if isinstance(event, RunStarted):
        return replace(row, status=RunStatus.RUNNING, started_at=event.at)
    if isinstance(event, RunPaused):
        return replace(row, status=RunStatus.PAUSED, reason=event.reason)
    if isinstance(event, RunResumed):
        return replace(row, status=RunStatus.RUNNING, reason=None)
    ended = _ENDED.get(type(event))
    if ended is not None:
        return replace(row, status=ended, ended_at=event.at, reason=getattr(event, "reason", None))
    return row


def time_key(at: float) -> bytes:
    """Submission time as a sortable 8-byte key (microseconds)."""
    return _U64.pack(max(0, round(at * 1_000_000)))


def sort_key(row: RunSummary) -> bytes:
    return time_key(row.submitted_at) + row.run_id.encode()


def keys_of(row: RunSummary) -> set[bytes]:
    """Every `run_keys` entry the run has in this state."""
    tail = sort_key(row)
    status, workflow = row.status.value.encode(), row.workflow.encode()
    return {
        b"t" + tail,
        b"s" + status + b"\0" + tail,
        b"w" + workflow + b"\0" + tail,
        b"x" + workflow + b"\0" + status + b"\0" + tail,
    }


def pruned_key(run_id: str) -> bytes:
    return b"p" + run_id.encode()


def pruned_into(store: EventLog[Any], run_id: str) -> str | None:
    """The archive a pruned run's events went to; None if it was never pruned."""
    (raw,) = store.index_get(KEYS, [pruned_key(run_id)])
    return None if raw is None else raw.decode()


def missing_run(store: EventStore[Any], run_id: str, where: object) -> str:
    """Why `run_id` is not in the log: never there, or pruned (and into which archive)."""
    archive = pruned_into(store, run_id)
    if archive is not None:
        return f"run {run_id!r} was pruned from {where} into {archive}"
    return f"no run {run_id!r} in {where}"


def command_key(run_id: str, position: int) -> bytes:
    return b"c" + run_id.encode() + b"\0" + _U64.pack(position)


class RunIndexer:
    """The `eventstore.Indexer` that keeps `runs` and `run_keys` (runs in the store's
    writer thread, inside the append's transaction)."""

    name = INDEX_NAME
    databases = (ROWS, KEYS)

    def apply(self, txn: IndexTxn, records: Sequence[Recorded[Event]]) -> None:
        rows: dict[str, RunSummary | None] = {}
        for rec in records:
            event = rec.event
            if isinstance(event, RunsPruned):
                for run_id in event.run_ids:
                    raw = txn.get(ROWS, run_id.encode())
                    if raw is not None:
                        for key in sorted(keys_of(_decode_row(raw))):
                            txn.delete(KEYS, key)
                        txn.delete(ROWS, run_id.encode())
                    rows.pop(run_id, None)
                    txn.put(KEYS, pruned_key(run_id), event.archive.encode())
                continue
            if isinstance(event, CommandIssued):
                if rec.stream == COMMANDS_STREAM:
                    txn.put(KEYS, command_key(event.run_id, rec.position), b"")
                continue
            if not isinstance(event, RUN_LEVEL) or not rec.stream.startswith(RUN_STREAM_PREFIX):
                continue
            run_id = rec.stream[len(RUN_STREAM_PREFIX) :]
            if run_id in rows:
                old = rows[run_id]
            else:
                raw = txn.get(ROWS, run_id.encode())
                old = None if raw is None else _decode_row(raw)
            new = rows[run_id] = summarize(old, event)
            if new is None or new == old:
                continue
            before = set() if old is None else keys_of(old)
            after = keys_of(new)
            for key in sorted(before - after):
                txn.delete(KEYS, key)
            for key in sorted(after - before):
                txn.put(KEYS, key, b"")
            txn.put(ROWS, run_id.encode(), _encode(new))


# ---- queries ------------------------------------------------------------------------


def summary(store: EventStore[Any], run_id: str) -> RunSummary | None:
    (raw,) = store.index_get(ROWS, [run_id.encode()])
    return None if raw is None else _decode_row(raw)


def list_runs(
    store: EventStore[Any],
    *,
    status: str | None = None,
    workflow: str | None = None,
    since: float | None = None,
    before: str | float | None = None,
    limit: int | None = None,
) -> list[RunSummary]:
    """Runs newest first (by submission time, then run id), filtered, from the index.

    `since`: submitted at or after this unix time. `before`: a run id (runs listed
    after it, the cursor of the previous page) or a unix time (submitted before it).
    Costs what the page costs, not what the log holds.
    """
    if status is not None:
        RunStatus(status)  # ValueError for an unknown status
    if workflow is not None and status is not None:
        prefix = b"x" + workflow.encode() + b"\0" + status.encode() + b"\0"
    elif workflow is not None:
        prefix = b"w" + workflow.encode() + b"\0"
    elif status is not None:
        prefix = b"s" + status.encode() + b"\0"
    else:
        prefix = b"t"
    lo = prefix + (b"" if since is None else time_key(since))
    hi = prefix + b"\xff"  # every key of the family (a time key never starts with 0xff)
    if isinstance(before, str):
        row = summary(store, before)
        if row is None:
            raise LookupError(f"no run {before!r}")
        hi = prefix + sort_key(row)
    elif before is not None:
        hi = prefix + time_key(before)
    keys = store.index_range(KEYS, lo, hi, reverse=True, limit=limit)
    run_ids = [key[len(prefix) + 8 :] for key, _ in keys]
    return [_decode_row(raw) for raw in store.index_get(ROWS, run_ids) if raw is not None]


def incomplete_runs(store: EventStore[Any]) -> list[RunSummary]:
    """Every run that is not terminal (queued, running, paused), oldest first."""
    found = [row for status in OPEN_STATUSES for row in list_runs(store, status=status.value)]
    return sorted(found, key=sort_key)


def command_positions(store: EventStore[Any], run_id: str, after: int = 0) -> list[int]:
    """Log positions of the operator commands for `run_id` logged after `after`."""
    prefix = b"c" + run_id.encode() + b"\0"
    keys = store.index_range(KEYS, prefix + _U64.pack(after + 1), prefix + b"\xff" * 9)
    return [_U64.unpack(key[len(prefix) :])[0] for key, _ in keys]


def rebuild_index(store: EventStore[Any]) -> int:
    """Drop the run index and build it again from the log alone; how many runs it holds."""
    store.rebuild_index()
    return len(store.index_range(KEYS, b"t", b"u"))
