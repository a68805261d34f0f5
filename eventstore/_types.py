"""Public value types returned by reads: a recorded event and a stream's metadata."""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

E = TypeVar("E")


class Recorded(msgspec.Struct, Generic[E], frozen=True, array_like=True, gc=False):
    """One event as stored: where it sits in the log and in its stream, and when.

    ``array_like`` because that is the layout of an ``events`` value, so that a
    read batch decodes straight into ``Recorded`` in one msgspec call (msgspec
    also encodes it as an array).
    """

    position: int
    """Global position, 1-based and dense across the whole store."""
    stream: str
    version: int
    """Position within ``stream``, 1-based and dense."""
    recorded_at: float
    """Unix seconds, taken by the writer when the append's transaction was built."""
    event: E


class StreamInfo(msgspec.Struct, frozen=True):
    """A stream's metadata, kept in an index updated by every append."""

    name: str
    version: int
    first_position: int
    last_position: int
    created_at: float
    updated_at: float
