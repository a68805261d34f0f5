"""A durable, append-only, multi-process event log on LMDB.

The whole public API is re-exported here; everything in ``_``-modules is private.
"""

from __future__ import annotations

from ._errors import (
    ConcurrencyError,
    CorruptEventError,
    EventStoreError,
    PayloadTooLargeError,
    StoreClosedError,
    StoreFormatError,
)
from ._index import Indexer, IndexTxn
from ._store import EventStore
from ._types import Recorded, StreamInfo

__all__ = [
    "ConcurrencyError",
    "CorruptEventError",
    "EventStore",
    "EventStoreError",
    "IndexTxn",
    "Indexer",
    "PayloadTooLargeError",
    "Recorded",
    "StoreClosedError",
    "StoreFormatError",
    "StreamInfo",
]
