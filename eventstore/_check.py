"""``check_store``: verify a whole store, page by page and record by record.

Two passes, and the second only if the first found the file sound: LMDB
trusts its pages, so reading a damaged file through it can abort the
process. First every page reachable from the newest meta page is checked
with plain reads (``_pages.walk``); then every record is read through LMDB
and decoded, and the indexes are compared with what the records say.
Problems are collected, each with its position where it has one, not raised.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from . import _env, _gaps, _pages
from . import _format as fmt
from ._errors import EventStoreError, StoreFormatError

_WALK_ATTEMPTS = 3
_BATCH = 4096


@dataclass(frozen=True)
class StoreProblem:
    """One thing wrong with the store; ``position`` is the event's, when there is one."""

    message: str
    position: int | None = None


@dataclass
class StoreCheck:
    """What ``check_store`` found."""

    pages: int = 0
    events: int = 0
    streams: int = 0
    problems: list[StoreProblem] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        return not self.problems


def check_store(path: str | os.PathLike[str], event_type: Any) -> StoreCheck:
    """Verify the store in directory ``path`` without writing a byte.

    Checks every reachable page (numbers, types, bounds, tree counts), that
    every event decodes as ``event_type`` at the position it is stored under,
    that positions are dense from 1 (but for the recorded gaps of removed
    streams), that each stream's versions are dense from 1, and that
    ``streams_index`` and ``streams`` say exactly what the
    events say. Raises StoreFormatError for what is not a store at all.
    Safe while other processes append: a page walk overtaken by a commit is
    repeated; the records are read in one LMDB snapshot.
    """
    root = pathlib.Path(path)
    report = StoreCheck()
    data_file = root / "data.mdb"
    for _ in range(_WALK_ATTEMPTS):
        try:
            before = _pages.read_meta(data_file).txnid
            walked = _pages.walk(data_file)
            moved = _pages.read_meta(data_file).txnid != before
        except FileNotFoundError:
            raise StoreFormatError(f"no event store at {str(root)!r}") from None
        except _pages.NotLmdbError:
            raise StoreFormatError(f"{str(root)!r} is not an event store") from None
        except _pages.PageError as exc:
            report.problems.append(StoreProblem(str(exc)))
            return report
        if not (walked.problems and moved):
            break
    report.pages = len(walked.pages)
    report.problems += [StoreProblem(message) for message in walked.problems]
    if report.problems:
        return report
    readonly = not os.access(root, os.W_OK) or not os.access(data_file, os.W_OK)
    shared = _env.acquire(root, "sync", create=False, readonly=readonly)
    try:
        shared.read(lambda txn: _check_records(txn, shared, event_type, report))
    except EventStoreError as exc:
        report.problems.append(StoreProblem(str(exc)))
    finally:
        _env.release(shared)
    return report


def _check_records(txn: Any, shared: _env.SharedEnv, event_type: Any, report: StoreCheck) -> None:
    """Read every record in one snapshot; the page walk made cursor steps safe."""
    decoder = fmt.event_decoder(event_type)
    problems = report.problems
    expected_index: dict[bytes, int] = {}
    rows: dict[str, fmt.StreamRow] = {}
    undecodable: list[int] = []
    """Positions reported as not decoding: what the index says of them cannot be judged."""
    position = 0
    for key, value in txn.cursor(db=shared.events):
        report.events += 1
        try:
            stored = fmt.unpack_u64(key)
        except Exception:
            problems.append(StoreProblem(f"a key that is not a position: {key!r}", position + 1))
            continue
        if stored != position + 1 and not _gaps.covered(
            txn, shared.pruned, position + 1, stored - 1
        ):  # removed streams leave recorded gaps; any other hole is damage
            problems.append(
                StoreProblem(f"positions {position + 1}..{stored - 1} are missing", position + 1)
            )
        position = stored
        try:
            recorded = decoder.decode(value)
        except msgspec.DecodeError as exc:
            problems.append(StoreProblem(f"does not decode: {exc}", position))
            undecodable.append(position)
            continue
        if recorded.position != position:
            problems.append(StoreProblem(f"says it is position {recorded.position}", position))
        row = rows.get(recorded.stream)
        version = 1 if row is None else row.version + 1
        since = 0 if row is None else row.last_position
        skipped = any(since < bad < position for bad in undecodable)
        if recorded.version != version and not (skipped and recorded.version > version):
            problems.append(
                StoreProblem(
                    f"is version {recorded.version} of {recorded.stream!r}, expected {version}",
                    position,
                )
            )
        first = position if row is None else row.first_position
        rows[recorded.stream] = fmt.StreamRow(recorded.version, first, position, 0.0, 0.0)
        expected_index[fmt.index_key(recorded.stream.encode(), recorded.version)] = position
    report.streams = len(rows)
    for key, value in txn.cursor(db=shared.streams_index):
        wanted = expected_index.pop(key, None)
        name = key[:-9].decode("utf-8", "replace")
        if wanted is None and len(value) == 8 and fmt.unpack_u64(value) in undecodable:
            continue
        if wanted is None:
            problems.append(StoreProblem(f"stream index has {name!r} v{_version(key)}, no event"))
        elif value != fmt.pack_u64(wanted):
            problems.append(StoreProblem(f"stream index of {name!r} points elsewhere", wanted))
    for wanted in sorted(expected_index.values()):
        problems.append(StoreProblem("missing from the stream index", wanted))
    for key, value in txn.cursor(db=shared.streams):
        name = key.decode("utf-8", "replace")
        want = rows.pop(name, None)
        try:
            row = fmt.decode_row(value)
        except msgspec.DecodeError as exc:
            problems.append(StoreProblem(f"stream row of {name!r} does not decode: {exc}"))
            continue
        if want is None:
            problems.append(StoreProblem(f"stream row of {name!r} has no events"))
        elif (row.version, row.first_position, row.last_position) != (
            want.version,
            want.first_position,
            want.last_position,
        ):
            problems.append(
                StoreProblem(
                    f"stream row of {name!r} says v{row.version} at {row.first_position}.."
                    f"{row.last_position}; the events say v{want.version} at "
                    f"{want.first_position}..{want.last_position}",
                    want.last_position,
                )
            )
    for name, want in rows.items():
        problems.append(StoreProblem(f"stream {name!r} has no stream row", want.last_position))


def _version(key: bytes) -> int:
    try:
        return fmt.unpack_u64(key[-8:])
    except Exception:
        return -1
