"""The step cache: which calls are identical, and which stored outputs are still fresh.

A `cache: {ttl}` step's outputs are stored (a `CacheEntryStored` event in the
cache stream) under a key that hashes everything that decides what the step
computes: workflow name, step id, the action (the rendered argv, or the
`module:function` of a call), `env`, params, the run's inputs, the foreach
item, and the outputs of the upstream steps it reads. A later attempt with the
same key within the TTL reuses them (`StepCacheHit`) instead of running.

Which upstream outputs a step reads: its dependencies (`after`, plus the step
before it in a sequential workflow) and every step its `when`, argv, env or
params templates name. A `call` step that reads other steps through
`ctx.steps` without depending on them is not covered: depend on what you read.

The key is sha256 over msgspec JSON with sorted keys, so dict order never
matters while 1 and 1.0, or "1" and 1, stay different (they are different
inputs to a step). The CacheIndex is a fold of the cache stream: the log stays
the only store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from engine.rules.events import CacheCleared, CacheEntryStored, Event
from engine.rules.expressions import referenced_steps, template_expressions
from engine.rules.spec import StepSpec

__all__ = [
    "CACHE_STREAM",
    "KEY_VERSION",
    "CacheIndex",
    "cache_entry",
    "cache_key",
    "steps_read",
]

CACHE_STREAM = "cache"
KEY_VERSION = 1  # bump when what goes into a key changes: old entries then never match


def steps_read(step: StepSpec, dependencies: Iterable[str]) -> tuple[str, ...]:
    """The step ids whose outputs `step` reads, sorted: its dependencies and every step
    its `when` or templates (in argv, env values and string params) reference."""
    found = set(dependencies)
    sources: list[str] = [step.when] if step.when else []
    texts = [*(step.run or ()), *step.env.values(), *_strings(step.params)]
    for text in texts:
        sources += template_expressions(text)
    for source in sources:
        found |= referenced_steps(source)
    found.discard(step.id)
    return tuple(sorted(found))


def cache_key(
    workflow: str,
    step: StepSpec,
    action: Sequence[str] | str,
    params: Mapping[str, Any],
    inputs: Mapping[str, Any],
    upstream_outputs: Mapping[str, Any],
    item: Any = None,
) -> str:
    """A hex sha256 naming one call of a step; equal keys mean interchangeable outputs.

    `action` is the rendered argv of a `run` step (templates already
    substituted) or the `call` path; `params` the rendered params;
    `upstream_outputs` maps each id from `steps_read` to that step's outputs.
    """
    canonical = {
        "v": KEY_VERSION,
        "workflow": workflow,
        "step": step.id,
        "action": list(action) if not isinstance(action, str) else action,
        "env": step.env,
        "params": params,
        "inputs": inputs,
        "upstream": upstream_outputs,
        "item": item,
    }
    encoded = msgspec.json.encode(canonical, order="sorted")
    return hashlib.sha256(encoded).hexdigest()


def cache_entry(
    key: str, outputs: Any, run_id: str, step_id: str, ttl: float, now: float
) -> CacheEntryStored:
    """The event that stores a succeeded step's outputs for `ttl` seconds from `now`."""
    return CacheEntryStored(
        at=now, key=key, outputs=outputs, run_id=run_id, step_id=step_id, expires_at=now + ttl
    )


class CacheIndex:
    """The live cache: a fold of the cache stream's events, newest entry per key wins."""

    def __init__(self) -> None:
        self._entries: dict[str, CacheEntryStored] = {}

    def apply(self, event: Event) -> None:
        match event:
            case CacheEntryStored(key=key):
                self._entries[key] = event
            case CacheCleared():
                self._entries.clear()
            case _:
                pass

    @classmethod
    def from_events(cls, events: Iterable[Event]) -> CacheIndex:
        index = cls()
        for event in events:
            index.apply(event)
        return index

    def lookup(self, key: str, now: float) -> tuple[Any, str] | None:
        """(outputs, run id that produced them) if `key` is stored and not expired at `now`."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires_at:
            return None
        return entry.outputs, entry.run_id

    def prune(self, now: float) -> int:
        """Forget expired entries (memory only; the log keeps them); returns how many."""
        expired = [k for k, e in self._entries.items() if now >= e.expires_at]
        for key in expired:
            del self._entries[key]
        return len(expired)

    def __len__(self) -> int:
        return len(self._entries)


def _strings(value: Any) -> list[str]:
    """Every string nested in params, where `${{ }}` templates may hide."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []
