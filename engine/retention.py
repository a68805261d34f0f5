"""Retention: prune ended runs into an archive, and compact the log's file.

Prune is crash-safe by order, never by luck: (1) the runs' events are written to
the archive (JSON Lines, gzip, the `wfa export` line format), fsynced and renamed
into place (its directory fsynced too); only then (2) are they removed from the
log, one LMDB transaction per batch that deletes the runs' streams and logs a
`RunsPruned` tombstone naming the archive (the run index drops their rows and
records the tombstone in that same transaction); then (3) their attempt output
directories are deleted. A kill at any moment leaves each run whole in the log,
or whole in the archive (or, between (1) and (2), in both); running the same
prune again with the same archive finishes the job without archiving a run
twice: runs the archive already holds are not written again, only removed.

Only terminal runs are pruned, and a terminal run never changes again, so
followers and readers of other runs see nothing but gaps in the global
positions (every reader skips them; see docs/eventstore.md).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec

from engine.input.datadir import ARCHIVE, ATTEMPTS
from engine.rules.errors import WorkflowAutomatorError
from engine.rules.events import PRUNED_STREAM, Event, RunsPruned, run_stream
from engine.rules.results import event_json
from engine.rules.state import TERMINAL_RUN, RunStatus
from engine.run_index import list_runs, pruned_into
from eventstore import EventStore

BATCH: Final = 500
"""Runs removed per LMDB transaction: bounded transactions, steady followers."""
SAY_EVERY: Final = 1000  # runs between two progress reports
Say = Callable[[str], None]  # told how far long work got (a spinner's text)


@dataclass(frozen=True)
class PruneReport:
    runs: int
    events: int
    archive: str
    archive_bytes: int


def default_archive(data_dir: Path, now: float) -> Path:
    """`<data>/archive/pruned-YYYY-MM-DD.jsonl.gz` (UTC): one file a day, appended to."""
    return data_dir / ARCHIVE / f"pruned-{time.strftime('%Y-%m-%d', time.gmtime(now))}.jsonl.gz"


def candidates(
    store: EventStore[Any],
    ended_before: float,
    workflow: str | None = None,
    status: str | None = None,
) -> list[str]:
    """Ids of the terminal runs that ended before `ended_before` (from the run index)."""
    terminal = [s.value for s in RunStatus if s in TERMINAL_RUN]
    if status is not None and status not in terminal:
        raise ValueError(
            f"--status {status!r} is not an ended status; one of: {', '.join(terminal)}"
        )
    found: list[str] = []
    for each in [status] if status is not None else terminal:
        for row in list_runs(store, status=each, workflow=workflow, before=ended_before):
            if row.ended_at is not None and row.ended_at < ended_before:
                found.append(row.run_id)
    return sorted(found)


class ArchiveError(WorkflowAutomatorError):
    """The archive named for a prune cannot be read or written as one."""


def archived_runs(archive: Path) -> dict[str, int]:
    """Run id -> how many of its events `archive` holds (empty if there is none).

    Only a regular file is read (a FIFO would block the prune for ever); anything
    that is not an archive of ours is an ArchiveError, before a run is touched.
    """
    counts: dict[str, int] = {}
    try:
        mode = archive.stat().st_mode
    except FileNotFoundError:
        return counts
    except OSError as exc:  # e.g. a path through a file
        raise ArchiveError(f"archive {archive}: {exc.strerror}; name another file") from None
    if not stat.S_ISREG(mode):
        raise ArchiveError(f"archive {archive} is not a regular file; name a new or an old archive")
    try:
        with gzip.open(archive, "rb") as lines:
            for line in lines:
                run_id = json.loads(line)["run_id"]
                counts[run_id] = counts.get(run_id, 0) + 1
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(
            f"archive {archive} is not a readable prune archive ({exc}); name another file"
        ) from None
    return counts


def _write_archive(
    archive: Path, store: EventStore[Event], run_ids: Sequence[str], say: Say
) -> int:
    """Append the runs' events to `archive` as a new gzip member: written to a temporary
    file (the old content first), fsynced, renamed over, directory fsynced."""
    try:
        return _write_member(archive, store, run_ids, say)
    except OSError as exc:  # nothing was removed from the log yet
        raise ArchiveError(
            f"cannot write archive {archive}: {exc.strerror}; name another file"
        ) from None


def _write_member(archive: Path, store: EventStore[Event], run_ids: Sequence[str], say: Say) -> int:
    archive.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = archive.with_name(archive.name + ".tmp")
    encode = msgspec.json.Encoder().encode
    events = 0
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
        if archive.exists():
            with open(archive, "rb") as old:
                shutil.copyfileobj(old, out)
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6) as member:
            for done, run_id in enumerate(run_ids):
                if done % SAY_EVERY == 0:
                    say(f"archiving runs: {done:,} of {len(run_ids):,}")
                for rec in store.read_stream(run_stream(run_id)):
                    member.write(encode(event_json(rec, with_stream=True)) + b"\n")
                    events += 1
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, archive)
    _fsync_dir(archive.parent)
    return events


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(
    store: EventStore[Event],
    data_dir: Path,
    run_ids: Sequence[str],
    archive: Path,
    now: float | None = None,
    say: Say = lambda text: None,
) -> PruneReport:
    """Archive then remove `run_ids` (terminal runs; see the module docstring); `say`
    hears how far it got."""
    now = time.time() if now is None else now
    archive = archive.resolve()
    held = archived_runs(archive)
    new = [r for r in run_ids if r not in held]
    events = _write_archive(archive, store, new, say) if new else 0
    held = archived_runs(archive) if new else held
    # Everything the archive holds that is still in the log, whole: resumes a prune cut short.
    removable = [
        r
        for r in sorted(set(run_ids) | set(held))
        if r in held and store.stream_version(run_stream(r)) == held[r]
    ]
    for i in range(0, len(removable), BATCH):
        say(f"removing runs from the log: {i:,} of {len(removable):,}")
        batch = tuple(removable[i : i + BATCH])
        store.remove_streams(
            [run_stream(r) for r in batch],
            PRUNED_STREAM,
            [RunsPruned(at=now, run_ids=batch, archive=str(archive))],
        )
    say("removing the pruned runs' attempt files")
    for run_id in held:
        if pruned_into(store, run_id) is not None:
            shutil.rmtree(data_dir / ATTEMPTS / run_id, ignore_errors=True)
    size = archive.stat().st_size if archive.exists() else 0
    return PruneReport(len(removable), events, str(archive), size)
