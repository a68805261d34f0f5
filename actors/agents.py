"""Agents and their step actors: each agent runs attempts on `capacity` StepActors.

A StepActor is the actor of one active step at a time: the workflow actor
hands it a durable `AttemptStarted`'s attempt (`StepActors.start`, no hop
through the agent), it runs the attempt to its end on its own thread and tells
the outcome to the workflow actor, which turns it into events. Step actors are
started with their agent and reused step after step (a thread per step would
cost more than a no-op step). At most `capacity` attempts run at once: the
pool (actors/pool.py) never grants more, and the workflow actor gives the slot
back once the attempt's end is durable (so the log never shows more than
`capacity` attempts on an agent).

The AgentActor owns its step actors: it cancels attempts (`CancelAttempt`),
replacing a step actor stuck in a thread-isolated call that was cancelled or
timed out, and stops them all with itself.

A thread-isolated `call` of an `async def` function takes no step actor: it
runs as a task on the agent's event loop thread (actors/execution/agent_loop.py),
handed there by the workflow actor (or, on the function's first call, by the
step actor that imported it), and the loop tells the outcome.

An agent with `backend: dask` has the same step actors, given a
`ClusterConnection`: they run every attempt, whatever its isolation, with
`run_attempt_on_cluster` (bounded waits, so no abandonment is needed), and a
cancel sets the attempt's cancel event as for local attempts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pykka

from actors.agent_load import AttemptKey
from actors.cluster import ClusterConnection, run_attempt_on_cluster  # imports no Dask
from actors.execution import AttemptRequest, run_attempt
from actors.execution.agent_loop import AgentLoop, is_async_call
from actors.execution.attempt import failed_outcome
from actors.execution.call_thread import run_call_here
from actors.messages import AttemptFinished, CancelAttempt, StartAttempt
from actors.pool import AgentPool
from engine.rules.errors import ErrorKind

ClusterResources = Callable[[AttemptKey], Mapping[str, float]]
"""Gives (and forgets) the Dask resources the runtime noted for an attempt."""

log = logging.getLogger(__name__)


class _Attempt:
    """One attempt in an agent's hands; its flags change under the agent's lock."""

    __slots__ = (
        "abandoned",
        "cancel",
        "finished",
        "inline",
        "on_loop",
        "reply_to",
        "request",
        "resources",
        "started",
        "step_actor",
    )

    def __init__(self, request: AttemptRequest, reply_to: Any) -> None:
        self.request = request
        self.reply_to = reply_to
        self.cancel = threading.Event()
        self.inline = request.call is not None and request.isolation == "thread"
        self.on_loop = False  # an `async def` call, on the agent's loop (no step actor)
        self.started = self.finished = self.abandoned = False
        self.step_actor: pykka.ActorRef[Any]  # set by StepActors.start
        self.resources: Mapping[str, float]  # Dask resources; set by a dask agent only

    @property
    def key(self) -> AttemptKey:
        return (self.request.run_id, self.request.step_id, self.request.attempt)


class StepActors:
    """One agent's step actors and the attempts in their hands; any thread, under a lock.

    Thread-isolated `call` steps run on the step actor's own thread. Such a
    function cannot be interrupted, so when its attempt is cancelled or times
    out the step actor is abandoned: the slot is given back and a new step
    actor takes its place, while the old one stops once the function returns
    (it sees `ctx.cancelled`). The engine's timeout timer is what cancels it.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        pool: AgentPool,
        cluster: ClusterConnection | None = None,
        cluster_resources: ClusterResources | None = None,
    ) -> None:
        self.name = name
        self.pool = pool
        self._cluster = cluster
        self._cluster_resources = cluster_resources
        self._lock = threading.Lock()
        self._running: dict[AttemptKey, _Attempt] = {}
        self._idle: list[pykka.ActorRef[Any]] = [StepActor.start(self) for _ in range(capacity)]
        self._loop = AgentLoop(name)

    def start(self, request: AttemptRequest, reply_to: Any) -> None:
        """Hand a durable attempt to an idle step actor (runs on the workflow actor's thread).

        The attempt is registered before its step actor sees it, so a cancel that
        overtakes it still finds it."""
        attempt = _Attempt(request, reply_to)
        if self._cluster is not None:
            attempt.inline = False  # a cluster attempt's wait is bounded
            attempt.resources = (
                self._cluster_resources(attempt.key) if self._cluster_resources else {}
            )
        elif attempt.inline and is_async_call(request, may_import=False):
            with self._lock:
                self._running[attempt.key] = attempt
            self._to_loop(attempt)
            return
        with self._lock:
            self._running[attempt.key] = attempt
            # The pool grants no more than `capacity` slots, so one is idle; a
            # new one is only a safety net.
            step_actor = self._idle.pop() if self._idle else StepActor.start(self)
            attempt.step_actor = step_actor
        step_actor.tell(StartAttempt(request, reply_to))

    def cancel(self, key: AttemptKey) -> None:
        """Tell a running attempt to stop; abandon its step actor if it cannot be stopped."""
        with self._lock:
            attempt = self._running.get(key)
            if attempt is None:
                return
            attempt.cancel.set()
            stuck = attempt.inline and attempt.started and not attempt.finished
            if stuck:
                attempt.abandoned = True
                del self._running[key]
                if not attempt.on_loop:
                    self._idle.append(StepActor.start(self))
        if attempt.on_loop:
            self._loop.cancel(key)
        elif stuck:
            attempt.step_actor.stop(block=False)  # it stops once the function returns
        if stuck:
            self.pool.release(key)

    def run(self, key: AttemptKey, step_actor: pykka.ActorRef[Any]) -> None:
        """Run one attempt to its end and report it (blocks; on the step actor's thread)."""
        with self._lock:
            attempt = self._running.get(key)
            if attempt is None:  # cannot happen: start registers before it tells
                return
        request = attempt.request
        if attempt.inline and is_async_call(request, may_import=True):
            with self._lock:
                self._idle.append(step_actor)
            self._to_loop(attempt)  # as later attempts of the function, now imported
            return
        with self._lock:
            attempt.started = True
        try:
            if attempt.cancel.is_set():
                outcome = failed_outcome(ErrorKind.AGENT, "cancelled before it started")
                outcome = msgspec.structs.replace(outcome, error_kind=None, cancelled=True)
            elif attempt.inline:  # never for a dask agent's attempts
                outcome = run_call_here(request, attempt.cancel)
            elif self._cluster is not None:
                outcome = run_attempt_on_cluster(
                    self._cluster, request, attempt.cancel, attempt.resources
                )
            else:
                outcome = run_attempt(request, attempt.cancel)
        except Exception as exc:  # a bug in execution must not leave the step hanging
            log.exception("agent %s: attempt %s crashed", self.name, attempt.key)
            outcome = failed_outcome(ErrorKind.AGENT, f"the agent failed: {exc!r}")
        self._finished(attempt, outcome, step_actor)

    def _to_loop(self, attempt: _Attempt) -> None:
        """Start an `async def` call on the agent's loop, which reports its outcome."""
        with self._lock:
            attempt.on_loop = attempt.started = True
        self._loop.start(
            attempt.key,
            attempt.request,
            attempt.cancel,
            lambda outcome: self._finished(attempt, outcome),
        )

    def _finished(
        self, attempt: _Attempt, outcome: Any, step_actor: pykka.ActorRef[Any] | None = None
    ) -> None:
        """Report the attempt's outcome, unless it was abandoned (any thread)."""
        request = attempt.request
        with self._lock:
            attempt.finished = True
            if attempt.abandoned:
                return
            self._running.pop(attempt.key, None)
            if step_actor is not None:  # before the reply: the freed slot may be reused at once
                self._idle.append(step_actor)
        finished = AttemptFinished(
            request.run_id, request.step_id, request.attempt, self.name, outcome
        )
        # The workflow actor gives the slot back once the attempt's end is durable.
        # If the run has no actor (it ended, or is being rebuilt), the log decides
        # what happens to the step, and the slot comes back here.
        try:
            attempt.reply_to.tell(finished)
        except pykka.ActorDeadError:
            self.pool.release(attempt.key)

    def stop(self) -> None:
        """Cancel what runs and stop every step actor, waiting for each (not the abandoned)."""
        with self._lock:
            for attempt in self._running.values():
                attempt.cancel.set()
            step_actors = self._idle + [
                a.step_actor for a in self._running.values() if not a.on_loop
            ]
            self._idle = []
        self._loop.stop()
        for step_actor in step_actors:
            step_actor.stop()


class StepActor(pykka.ThreadingActor):
    """Runs the attempts its agent hands it, one at a time, on its own thread."""

    use_daemon_thread = True  # an abandoned one may be stuck in a call at exit

    def __init__(self, owner: StepActors) -> None:
        super().__init__()
        self.owner = owner

    def on_receive(self, message: Any) -> None:
        if isinstance(message, StartAttempt):
            r = message.request
            self.owner.run((r.run_id, r.step_id, r.attempt), self.actor_ref)


class AgentActor(pykka.ThreadingActor):
    """One per agent: cancels its attempts, and stops its step actors with itself."""

    def __init__(self, step_actors: StepActors) -> None:
        super().__init__()
        self.step_actors = step_actors

    def on_receive(self, message: Any) -> None:
        if isinstance(message, CancelAttempt):
            self.step_actors.cancel((message.run_id, message.step_id, message.attempt))

    def on_stop(self) -> None:
        self.step_actors.stop()
