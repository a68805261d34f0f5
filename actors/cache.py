"""The step cache as the runtime uses it: one shared index, and the key of a ready step.

The index is a fold of the "cache" stream (engine/rules/policies/caching.py), shared by every
workflow actor of the process: loaded when the runtime starts, updated when
this engine stores an entry and when the facade's follower sees any event of
the stream (so `wfa cache clear` from another process empties it too). The
log stays the only store; the index is memory.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from engine.rules.errors import WorkflowAutomatorError
from engine.rules.events import Event
from engine.rules.policies.caching import CACHE_STREAM, CacheIndex, cache_key, steps_read
from engine.rules.policies.conditions import resolve_run_argv
from engine.rules.state import RunState, index_of, spec_of

__all__ = ["CACHE_STREAM", "SharedCache", "step_cache_key"]


class SharedCache:
    """A CacheIndex behind a lock: any thread may look up or apply."""

    def __init__(self, index: CacheIndex | None = None) -> None:
        self._index = index or CacheIndex()
        self._lock = threading.Lock()

    def apply(self, event: Event) -> None:
        with self._lock:
            self._index.apply(event)

    def lookup(self, key: str, now: float) -> tuple[Any, str] | None:
        with self._lock:
            return self._index.lookup(key, now)

    def __len__(self) -> int:
        with self._lock:
            return len(self._index)


def step_cache_key(
    state: RunState, step_id: str, view: Mapping[str, Mapping[str, Any]]
) -> str | None:
    """The cache key of a ready step (or foreach instance); None if its argv cannot render.

    `view` is the run's `ctx.steps` view: step id -> {"outputs", "status"}.
    """
    step = spec_of(state, step_id)
    top = state.steps[step_id].parent or step_id
    read = steps_read(step, index_of(state).deps[top])
    upstream = {sid: view[sid]["outputs"] if sid in view else None for sid in read}
    try:
        argv = resolve_run_argv(state, step_id)
    except WorkflowAutomatorError:
        return None  # the attempt fails the same way; nothing to reuse
    action = argv if argv is not None else step.call or ""
    item = state.steps[step_id].item
    return cache_key(state.spec.name, step, action, step.params, state.inputs, upstream, item)
