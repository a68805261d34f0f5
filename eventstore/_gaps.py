"""Gaps: positions whose events were removed (``EventStore.remove_streams``).

The global position sequence never goes back, so removing a stream leaves its
positions as gaps. Each gap is recorded, in the same transaction as the removal,
in the ``pruned`` database as maximal ranges ``start -> end`` (8-byte big-endian
each, inclusive; adjacent ranges are always merged). Readers tell a recorded gap
from a lost record with one lookup (``covered``), so a position that is missing
without having been removed is still reported as corruption; and the highest
range end keeps the next position above every removed one (``last_position``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _format as fmt
from ._errors import CorruptEventError


def last_position(txn: Any, events_db: Any, pruned_db: Any) -> int:
    """The highest position ever given out: the last event's, or a removed one's."""
    cursor = txn.cursor(db=events_db)
    last = fmt.unpack_u64(cursor.key()) if cursor.last() else 0
    gaps = txn.cursor(db=pruned_db)
    if gaps.last():
        last = max(last, fmt.unpack_u64(gaps.value()))
    return last


def _range_at(txn: Any, pruned_db: Any, position: int) -> tuple[int, int] | None:
    """The recorded range holding ``position``, if any."""
    cursor = txn.cursor(db=pruned_db)
    key = fmt.pack_u64(position)
    if cursor.set_range(key):
        if cursor.key() == key:
            return position, fmt.unpack_u64(cursor.value())
        if not cursor.prev():
            return None
    elif not cursor.last():
        return None
    start, end = fmt.unpack_u64(cursor.key()), fmt.unpack_u64(cursor.value())
    return (start, end) if start <= position <= end else None


def covered(txn: Any, pruned_db: Any, lo: int, hi: int) -> bool:
    """True if every position in ``lo..hi`` was removed (ranges are maximal, so one
    range holds them all or they are not all removed)."""
    if hi < lo:
        return True
    found = _range_at(txn, pruned_db, lo)
    return found is not None and found[1] >= hi


def record(txn: Any, pruned_db: Any, positions: Sequence[int]) -> None:
    """Record removed ``positions`` (sorted, distinct, none removed before)."""
    i = 0
    while i < len(positions):
        start = end = positions[i]
        i += 1
        while i < len(positions) and positions[i] == end + 1:
            end = positions[i]
            i += 1
        left = _range_at(txn, pruned_db, start - 1) if start > 1 else None
        if left is not None:
            start = left[0]
        right_key = fmt.pack_u64(end + 1)
        right = txn.get(right_key, db=pruned_db)
        if right is not None:
            txn.delete(right_key, db=pruned_db)
            end = fmt.unpack_u64(right)
        txn.put(fmt.pack_u64(start), fmt.pack_u64(end), db=pruned_db)


def removed_count(txn: Any, pruned_db: Any) -> int:
    """How many positions were removed in all."""
    total = 0
    for key, value in txn.cursor(db=pruned_db):
        total += fmt.unpack_u64(value) - fmt.unpack_u64(key) + 1
    return total


def read_range(
    txn: Any, cursor: Any, pruned_db: Any, start: int, top: int, limit: int
) -> tuple[list[int], list[bytes]]:
    """Positions and values of up to ``limit`` records from ``start`` to ``top``, with
    ``cursor`` on the events database, where positions may be recorded gaps; a missing
    position that is not one is corruption. Fewer than ``limit``: nothing more to ``top``."""
    positions: list[int] = []
    values: list[bytes] = []
    expected = start
    if cursor.set_range(fmt.pack_u64(start)):
        for key, value in cursor.iternext(keys=True, values=True):
            found = fmt.unpack_u64(key)
            if found > top:
                break
            if found != expected and not covered(txn, pruned_db, expected, found - 1):
                raise CorruptEventError(expected, "missing from the log")
            positions.append(found)
            values.append(value)
            expected = found + 1
            if len(values) == limit:
                return positions, values
    if not covered(txn, pruned_db, expected, top):
        raise CorruptEventError(expected, "missing from the log")
    return positions, values
