"""The store's exceptions: one root, one subclass per thing a caller can act on."""

from __future__ import annotations


class EventStoreError(Exception):
    """Root of every error the event store raises on purpose."""


class ConcurrencyError(EventStoreError):
    """An append named a stale ``expected_version``; nothing was written.

    The caller's view of the stream is out of date: re-read the stream, decide
    again, and retry with the current version.
    """

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream!r} is at version {actual}, not the expected {expected}; "
            "nothing was appended (re-read the stream and retry)"
        )


class StoreFormatError(EventStoreError):
    """The path is not a store this code can open (foreign, newer, or missing)."""


class PayloadTooLargeError(EventStoreError):
    """An event's encoded size exceeds the store's ``max_payload``; nothing was written."""

    def __init__(self, stream: str, size: int, limit: int) -> None:
        self.stream = stream
        self.size = size
        self.limit = limit
        super().__init__(
            f"event for stream {stream!r} encodes to {size} bytes, over the limit of "
            f"{limit} bytes (raise max_payload or store the bulk elsewhere)"
        )


class CorruptEventError(EventStoreError):
    """The record at ``position`` cannot be read or decoded; reading stops there."""

    def __init__(self, position: int, reason: str) -> None:
        self.position = position
        self.reason = reason
        super().__init__(f"event at position {position} is corrupt or undecodable: {reason}")


class CorruptStoreError(EventStoreError):
    """The store's file is damaged (truncated, overwritten, garbled); nothing was written.

    Raised before LMDB maps a file that cannot be sound, and for every LMDB
    error that means damage. Once raised, the handle stays unusable: every later
    read or append raises it again, so nothing waits for a log that cannot move.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is damaged: {reason}; restore it from a backup")


class StoreReadOnlyError(EventStoreError):
    """An append to a store opened read-only (its directory is not writable)."""


class StoreClosedError(EventStoreError):
    """The store was used after ``close()``."""


class StoreBusyError(EventStoreError):
    """The store cannot be used as asked while another holder has it: opening it while
    it is being compacted, or compacting it while another handle has it open."""
