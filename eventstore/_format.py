"""The on-disk format, in one place so that it can only change on purpose.

An LMDB environment (``data.mdb`` + ``lock.mdb``) holding four named databases:

* ``meta``: ``b"format"`` -> ``FORMAT_MARKER``, ``b"version"`` -> 4-byte big-endian
  ``FORMAT_VERSION``. A reader refuses a higher version.
* ``events``: 8-byte big-endian position -> msgpack array
  ``[position, stream, version, recorded_at, event]``; the event is the msgpack
  of the caller's Struct, spliced in unchanged. Repeating the position lets a
  batch decode straight into ``Recorded`` arguments and catches a misplaced value.
* ``streams_index``: utf-8 stream + ``b"\\0"`` + 8-byte big-endian version -> 8-byte
  big-endian position.
* ``streams``: utf-8 stream -> msgpack array
  ``[version, first_position, last_position, created_at, updated_at]``.
* ``pruned``: 8-byte big-endian first position -> 8-byte big-endian last position
  of each range of removed positions (gaps; eventstore/_gaps.py).

Big-endian integer keys sort in numeric order under LMDB's byte ordering, which
is what makes "last key + 1" the next position and a cursor scan the log order.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import msgspec

from ._types import Recorded

FORMAT_MARKER: Final = b"workflow-automator/eventstore"
FORMAT_VERSION: Final = 1
KEY_FORMAT: Final = b"format"
KEY_VERSION: Final = b"version"

DB_META: Final = b"meta"
DB_EVENTS: Final = b"events"
DB_STREAMS_INDEX: Final = b"streams_index"
DB_STREAMS: Final = b"streams"
DB_PRUNED: Final = b"pruned"
"""Removed positions (gaps), as ranges: see eventstore/_gaps.py."""

LMDB_FILES: Final = frozenset({"data.mdb", "lock.mdb"})
MAX_STREAM_BYTES: Final = 400
"""LMDB keys are at most 511 bytes; the index key adds 9 to the stream name."""

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
pack_u64 = _U64.pack


def unpack_u64(data: bytes) -> int:
    """Decode an 8-byte big-endian key; raise ``struct.error`` on any other length."""
    value: int = _U64.unpack(data)[0]
    return value


def pack_version(version: int) -> bytes:
    return _U32.pack(version)


def unpack_version(data: bytes) -> int:
    value: int = _U32.unpack(data)[0]
    return value


def stream_key(stream: str) -> bytes:
    """Validate a stream name and return its key; names are non-empty, NUL-free."""
    if not isinstance(stream, str) or not stream:
        raise ValueError(f"stream must be a non-empty str, got {stream!r}")
    key = stream.encode("utf-8")
    if b"\0" in key:
        raise ValueError(f"stream name must not contain NUL: {stream!r}")
    if len(key) > MAX_STREAM_BYTES:
        raise ValueError(f"stream name is {len(key)} utf-8 bytes, over {MAX_STREAM_BYTES}")
    return key


def index_key(skey: bytes, version: int) -> bytes:
    return skey + b"\0" + _U64.pack(version)


class StreamRow(msgspec.Struct, frozen=True, array_like=True):
    """The value under a ``streams`` key."""

    version: int
    first_position: int
    last_position: int
    created_at: float
    updated_at: float


_encoder = msgspec.msgpack.Encoder()
_row_decoder = msgspec.msgpack.Decoder(StreamRow)


def encode_event_value(
    position: int, stream: str, version: int, recorded_at: float, payload: bytes
) -> bytes:
    """Build an ``events`` value around an already-encoded event payload."""
    return _encoder.encode((position, stream, version, recorded_at, msgspec.Raw(payload)))


def encode_row(row: StreamRow) -> bytes:
    return _encoder.encode(row)


def decode_row(data: bytes) -> StreamRow:
    return _row_decoder.decode(data)


def event_decoder(event_type: Any) -> msgspec.msgpack.Decoder[Any]:
    """Decode one ``events`` value straight into ``Recorded``; lenient about unknown
    event fields."""
    return msgspec.msgpack.Decoder(Recorded[event_type])
