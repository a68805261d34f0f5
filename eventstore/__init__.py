"""A durable, append-only, multi-process event log on LMDB.

The whole public API is re-exported here; everything in ``_``-modules is private.
"""

from __future__ import annotations

from ._check import StoreCheck, StoreProblem, check_store
from ._compact import compact_store
from ._errors import (
    ConcurrencyError,
    CorruptEventError,
    CorruptStoreError,
    EventStoreError,
    PayloadTooLargeError,
    StoreBusyError,
    StoreClosedError,
    StoreFormatError,
    StoreReadOnlyError,
)
from ._index import Indexer, IndexTxn
from ._protocol import EventLog
from ._store import EventStore
from ._types import Recorded, StreamInfo

__all__ = [
    "ConcurrencyError",
    "CorruptEventError",
    "CorruptStoreError",
    "EventLog",
    "EventStore",
    "EventStoreError",
    "IndexTxn",
    "Indexer",
    "PayloadTooLargeError",
    "Recorded",
    "StoreBusyError",
    "StoreCheck",
    "StoreClosedError",
    "StoreFormatError",
    "StoreProblem",
    "StoreReadOnlyError",
    "StreamInfo",
    "check_store",
    "compact_store",
]
