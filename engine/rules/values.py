"""Free-form values (inputs, `with`, signal data, skip and step outputs) as the log keeps them.

The log stores msgpack, which holds whole numbers of 64 bits (and expressions
compute with signed ones), and every view of it (`wfa export`, `--json`, the web
UI, `ctx.steps`) is JSON, which has no NaN or infinity: msgspec writes them as
null. A value with either would crash the append, or change silently;
`unstorable` says so before it is logged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import msgspec

MAX_INT: Final = 2**63 - 1
"""Whole numbers in free-form values must lie within ±MAX_INT."""
MAX_OUTPUT_BYTES: Final = 1 << 20
"""The most a free-form value may take as JSON: a step's outputs (larger ones fail with
kind `output`), a run's inputs or outputs, a child run's `with:`, a foreach's items, a
signal's data. One event must hold it, beside its run's other events of one commit."""
MAX_MESSAGE_CHARS: Final = 16_384
"""The most of a failure's message the log keeps (the whole traceback is in stderr.log)."""
MAX_EVENT_BYTES: Final = 4 * MAX_OUTPUT_BYTES
"""The most one event of the engine's log may take (its store's `max_payload`). Outputs
of MAX_OUTPUT_BYTES as JSON take up to 2.25 times as much as msgpack (a short float,
`1.5,` in JSON, is 9 bytes), and the event around them some more."""


def unstorable(value: object) -> tuple[str, str] | None:
    """What in `value` (plain data: dicts, lists, scalars) the log cannot keep as it is,
    and what to do instead; None when it can."""
    pending = [value]
    while pending:  # not recursive: a deeply nested value must not end in RecursionError
        item = pending.pop()
        if isinstance(item, bool | str) or item is None:
            continue
        if isinstance(item, int):
            if abs(item) > MAX_INT:
                return (
                    "holds a whole number too large to store",
                    f"whole numbers lie within ±{MAX_INT}; pass it as a string",
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                return (
                    f"holds the number {item!r}, which JSON cannot hold",
                    "numbers must be finite; pass it as a string or leave it out",
                )
        elif isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return None


def too_large(value: object) -> tuple[str, str] | None:
    """Whether `value` (plain data the log can keep) takes more than MAX_OUTPUT_BYTES as
    JSON, and what to do instead; None when it fits."""
    size = len(msgspec.json.encode(value))
    if size <= MAX_OUTPUT_BYTES:
        return None
    return (
        f"takes {size:,} bytes as JSON, more than the limit of {MAX_OUTPUT_BYTES:,}",
        "write the bulk to a file and pass its path instead",
    )


def unloggable(value: object) -> tuple[str, str] | None:
    """What keeps `value` out of one event, and what to do instead: `unstorable`, else
    `too_large`; None when the log can keep it."""
    return unstorable(value) or too_large(value)


def clipped(message: str) -> str:
    """`message` cut to MAX_MESSAGE_CHARS, saying how much was cut."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    cut = len(message) - MAX_MESSAGE_CHARS
    return f"{message[:MAX_MESSAGE_CHARS]}... [{cut:,} more characters not kept]"
