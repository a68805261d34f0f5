"""Messages between actors: frozen msgspec Structs in the imperative.

pykka does not copy messages, so nothing mutable crosses between actors: a
message holds only frozen Structs, tuples, strings and numbers (ActorRefs are
immutable handles). Every message between actors is here, so the protocol
between them reads in one place.
"""

from __future__ import annotations

from typing import Any

import msgspec

from actors.execution.attempt import AttemptOutcome, AttemptRequest
from engine.rules.errors import ErrorKind


class AdmitRun(msgspec.Struct, frozen=True):
    """A run is queued in the log; admit it when a slot is free (scheduler)."""

    run_id: str
    priority: int = 0
    commands: tuple[Any, ...] = ()  # operators' triggers logged before admission, in order


class RunEnded(msgspec.Struct, frozen=True):
    """A workflow actor stopped driving its run: terminal, or crashed (scheduler)."""

    run_id: str
    crashed: bool = False
    error: str = ""  # what it crashed with


class DeliverCommand(msgspec.Struct, frozen=True):
    """An operator's command (a decide trigger) for one run (scheduler -> workflow)."""

    run_id: str
    trigger: Any  # an engine.rules.decide Trigger: frozen Struct


class FireTimer(msgspec.Struct, frozen=True):
    """A timer armed from state came due (timer service -> workflow)."""

    trigger: Any  # engine.rules.decide.TimerFired


class AgentGranted(msgspec.Struct, frozen=True):
    """The pool reserved a slot of `agent` for attempt `attempt` of a waiting step
    (pool -> workflow). `unavailable` set: no slot; the attempt is to fail at once
    with kind `kind` and that message (every capable agent's breaker is open, or
    the step could never fit the machine)."""

    step_id: str
    agent: str
    attempt: int
    unavailable: str | None = None
    kind: ErrorKind = ErrorKind.AGENT


class PlaceGranted(msgspec.Struct, frozen=True):
    """Decide the grants stashed since the last cycle (workflow -> itself)."""


class WaitForResources(msgspec.Struct, frozen=True):
    """The pool holds a ready step back: usage plus its `resources` would break a cap."""

    step_id: str
    reason: str


class StopRuns(msgspec.Struct, frozen=True):
    """Stop admitting and stop every workflow actor, leaving runs resumable."""


class StartAttempt(msgspec.Struct, frozen=True):
    """Run this attempt to its end and tell `reply_to` how it ended (-> a step actor)."""

    request: AttemptRequest
    reply_to: Any  # the ActorRef told AttemptFinished


class CancelAttempt(msgspec.Struct, frozen=True):
    """Cancel this attempt if it still runs (workflow -> its agent)."""

    run_id: str
    step_id: str
    attempt: int


class AttemptFinished(msgspec.Struct, frozen=True):
    """How an attempt ended, to be turned into events (step actor -> workflow)."""

    run_id: str
    step_id: str
    attempt: int
    agent: str
    outcome: AttemptOutcome


class AdmitChild(msgspec.Struct, frozen=True):
    """A child run its parent waits for: admit it now, beyond max_concurrent_workflows
    (its parent holds a slot already; waiting for another could wait for ever)."""

    run_id: str
