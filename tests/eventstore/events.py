"""Event types for the store's tests; importable by spawned child processes."""

from __future__ import annotations

import msgspec


class Opened(msgspec.Struct, frozen=True, tag=True):
    name: str


class Counted(msgspec.Struct, frozen=True, tag=True):
    n: int
    note: str = ""


class CountedV2(msgspec.Struct, frozen=True, tag="Counted"):
    """``Counted`` after a field was added with a default, as schema evolution allows."""

    n: int
    note: str = ""
    extra: int = 7


Event = Opened | Counted
