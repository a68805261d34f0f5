"""Agents: the live pool that tracks load, and the actor that runs attempts.

`AgentPool` is the allocator's live side: a lock-protected table of agents and
their running attempts, called directly (never through an actor ask) so that a
workflow actor can reserve an agent in the same decide cycle that makes a step
ready, and persist `AttemptStarted` in the same commit. Which agent to pick is
a pure strategy over plain data (engine/allocation.py, a later issue); this
module only keeps the counts honest.

`AgentActor` runs attempts on its own worker threads, at most `capacity` at
once, and tells the result to the workflow actor that asked.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pykka

from actors.execution import AttemptOutcome, AttemptRequest, run_attempt
from engine.config import AgentConfig
from engine.errors import ErrorKind

log = logging.getLogger(__name__)


def failed_outcome(kind: ErrorKind, message: str) -> AttemptOutcome:
    """An outcome for an attempt that could not run at all."""
    now = time.time()
    return AttemptOutcome(
        succeeded=False, error_kind=kind, message=message, started_at=now, ended_at=now
    )


class AgentLoad(msgspec.Struct, kw_only=True):
    name: str
    capabilities: frozenset[str]
    capacity: int
    running: int = 0
    available: bool = True


class AgentPool:
    """Which agents exist and how busy each is; safe to call from any thread."""

    def __init__(self, agents: Sequence[AgentConfig]) -> None:
        self._lock = threading.Lock()
        self._agents = {
            a.name: AgentLoad(
                name=a.name, capabilities=frozenset(a.capabilities), capacity=a.capacity
            )
            for a in agents
        }
        self._waiters: list[Callable[[], None]] = []

    @property
    def names(self) -> list[str]:
        return list(self._agents)

    def capable(self, capability: str) -> list[str]:
        return [a.name for a in self._agents.values() if capability in a.capabilities]

    def reserve(self, capability: str, preferred: str | None = None) -> str | None:
        """Take one slot of the preferred agent, else of the least-loaded capable one."""
        with self._lock:
            if preferred is not None:
                agent = self._agents.get(preferred)
                if agent is not None and agent.available and agent.running < agent.capacity:
                    agent.running += 1
                    return agent.name
            best: AgentLoad | None = None
            for agent in self._agents.values():
                if capability not in agent.capabilities or not agent.available:
                    continue
                if agent.running >= agent.capacity:
                    continue
                if best is None or agent.running * best.capacity < best.running * agent.capacity:
                    best = agent
            if best is None:
                return None
            best.running += 1
            return best.name

    def release(self, name: str) -> None:
        """Give a slot back and wake everyone who waited for capacity."""
        with self._lock:
            agent = self._agents.get(name)
            if agent is not None and agent.running > 0:
                agent.running -= 1
            waiters, self._waiters = self._waiters, []
        for wake in waiters:
            wake()

    def notify_when_free(self, wake: Callable[[], None]) -> None:
        """Call `wake` once, after the next release (from the releasing thread)."""
        with self._lock:
            self._waiters.append(wake)

    def loads(self) -> list[AgentLoad]:
        with self._lock:
            return [msgspec.structs.replace(a) for a in self._agents.values()]


class StartAttempt(msgspec.Struct, frozen=True):
    request: AttemptRequest
    reply_to: Any  # the ActorRef told AttemptFinished


class CancelAttempt(msgspec.Struct, frozen=True):
    run_id: str
    step_id: str
    attempt: int


class AttemptFinished(msgspec.Struct, frozen=True):
    run_id: str
    step_id: str
    attempt: int
    agent: str
    outcome: AttemptOutcome


class AgentActor(pykka.ThreadingActor):
    """Runs attempts; its mailbox thread only hands them to worker threads, never blocks."""

    def __init__(self, name: str, capacity: int, pool: AgentPool) -> None:
        super().__init__()
        self.name = name
        self.pool = pool
        self._cancels: dict[tuple[str, str, int], threading.Event] = {}
        # A fixed set of worker threads, started with the agent: the thread count
        # of an engine is known up front and never grows with the work.
        self._work: queue.SimpleQueue[tuple[AttemptRequest, threading.Event, Any] | None] = (
            queue.SimpleQueue()
        )
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"wfa-{name}-{n}", daemon=True)
            for n in range(capacity)
        ]
        for worker in self._workers:
            worker.start()

    def on_receive(self, message: Any) -> None:
        match message:
            case StartAttempt(request=request, reply_to=reply_to):
                key = (request.run_id, request.step_id, request.attempt)
                cancel = self._cancels.setdefault(key, threading.Event())
                self._work.put((request, cancel, reply_to))
            case CancelAttempt(run_id=run_id, step_id=step_id, attempt=attempt):
                event = self._cancels.get((run_id, step_id, attempt))
                if event is not None:
                    event.set()

    def _work_loop(self) -> None:
        while (work := self._work.get()) is not None:
            self._run(*work)

    def _run(self, request: AttemptRequest, cancel: threading.Event, reply_to: Any) -> None:
        """Runs on a worker thread; blocks for the attempt's whole duration."""
        try:
            outcome = run_attempt(request, cancel)
        except Exception as exc:  # a bug in execution must not leave the step hanging
            log.exception(
                "agent %s: attempt %s of %s crashed", self.name, request.attempt, request.step_id
            )
            outcome = failed_outcome(ErrorKind.AGENT, f"the agent failed: {exc!r}")
        finally:
            self._cancels.pop((request.run_id, request.step_id, request.attempt), None)
            self.pool.release(self.name)
        finished = AttemptFinished(
            request.run_id, request.step_id, request.attempt, self.name, outcome
        )
        # The run may have ended (or its actor is being rebuilt): the log decides, not this.
        with contextlib.suppress(pykka.ActorDeadError):
            reply_to.tell(finished)

    def on_stop(self) -> None:
        for event in list(self._cancels.values()):
            event.set()
        for _ in self._workers:
            self._work.put(None)
        for worker in self._workers:
            worker.join()
