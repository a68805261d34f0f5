"""A durable, append-only, multi-process event log on LMDB."""

from __future__ import annotations

__all__: list[str] = []
