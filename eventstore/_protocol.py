"""The log's contract as the rest of the project sees it: a typed Protocol.

The actors, the monitors and the rules that read the log depend on this, not on
`EventStore` itself, so what they may do with the log is written in one place
and a test double, if ever needed, has a precise shape to meet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from ._types import Recorded, StreamInfo

E = TypeVar("E")


@runtime_checkable
class EventLog(Protocol[E]):
    """Append to streams, read them back, and read the whole log in order."""

    def append(
        self, stream: str, events: Sequence[E], expected_version: int | None = None
    ) -> list[int]:
        """Append `events` to `stream` atomically (durably); their global positions."""
        ...

    def read_all(
        self, from_position: int = 1, to_position: int | None = None
    ) -> Iterator[Recorded[E]]:
        """The log in order, from `from_position` up to `to_position` (or its end now)."""
        ...

    def read_stream(self, stream: str, from_version: int = 1) -> Iterator[Recorded[E]]:
        """One stream's events in version order."""
        ...

    def read_positions(self, positions: Sequence[int]) -> list[Recorded[E]]:
        """The events at these global positions."""
        ...

    def last_position(self) -> int:
        """The global position of the newest event (0 for an empty log)."""
        ...

    def position_at(self, at: float, key: Callable[[Recorded[E]], float] | None = None) -> int:
        """The first position whose time (`key`, else recorded_at) is at or after `at`."""
        ...

    def replace_stream(self, stream: str, events: Sequence[E]) -> list[int]:
        """Put `events` in place of every event of `stream` (from version 1), atomically."""
        ...

    def stream_version(self, stream: str) -> int:
        """How many events `stream` holds (0 for an unknown stream)."""
        ...

    def streams(self, prefix: str = "") -> list[StreamInfo]:
        """Every stream whose name starts with `prefix`."""
        ...

    def index_get(self, db: str, keys: Sequence[bytes]) -> list[bytes | None]:
        """The values under `keys` in the index database `db` (None where absent)."""
        ...
