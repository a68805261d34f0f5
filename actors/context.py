"""What a `call` step's function receives: `fn(ctx) -> outputs`.

A `StepContext` is built fresh for every attempt by the attempt executor
(actors/execution) and handed to the step function in the thread or child
process that runs it. It is the step's whole view of the engine: identity of
the attempt, its inputs and upstream outputs, a cancellation flag to poll and a
logger. Nothing in it reaches back into the engine.

Cancellation is cooperative. A Python thread cannot be killed, so when an
attempt times out or its run is cancelled the engine sets `cancelled` and
stops waiting; a long-running function should check `ctx.cancelled.is_set()`
(or `ctx.cancelled.wait(seconds)` instead of `time.sleep`) and return early.
In process isolation the child process is killed after a short grace period
whether or not the function noticed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["StepContext"]


@dataclass(frozen=True, kw_only=True, slots=True)
class StepContext:
    """One attempt of one step, as seen by the step's function.

    `inputs`, `params`, `steps` and `item` are private copies: changing them
    changes nothing outside the attempt. `steps` is a read-only mapping of each
    step id of the run to `{"outputs": ..., "status": ...}`, each entry copied
    when first read (`dict(ctx.steps)` for a plain dict). `ctx.steps.api.outputs`
    reads the same entry as an attribute, typed: the msgspec Struct that step's
    function is annotated to return, if it is one (actors/execution/steps_view.py).
    """

    run_id: str
    step_id: str
    attempt: int  # 1 for the first attempt
    agent: str  # name of the agent running this attempt
    idempotency_key: str  # the same for every attempt of this step in this run
    inputs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the step's `with:`
    steps: Mapping[str, Any] = field(default_factory=dict)
    item: Any = None  # the `foreach` item, None outside a foreach
    cancelled: threading.Event = field(default_factory=threading.Event)
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("wfa.step"))
