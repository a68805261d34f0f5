"""AgentActor: runs attempts on its own worker threads and reports their outcomes.

At most `capacity` attempts run at once: the pool (actors/pool.py) never
grants more. When an attempt ends, its worker thread tells the result to the
workflow actor that asked, which gives the slot back to the pool once the
attempt's end is durable (so the log never shows more than `capacity`
attempts on an agent).

An agent with `backend: dask` is the same actor given a `ClusterConnection`:
its worker threads run every attempt, whatever its isolation, with
`run_attempt_on_cluster` (bounded waits, so no inline abandonment is needed),
and a cancel sets the attempt's cancel event as for local attempts.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import pykka

from actors.agent_load import AttemptKey
from actors.cluster import ClusterConnection, run_attempt_on_cluster  # imports no Dask
from actors.execution import AttemptOutcome, AttemptRequest, run_attempt
from actors.execution.attempt import failed_outcome
from actors.execution.call_thread import run_call_here
from actors.pool import AgentPool
from engine.errors import ErrorKind

ClusterResources = Callable[[AttemptKey], Mapping[str, float]]
"""Gives (and forgets) the Dask resources the runtime noted for an attempt."""

log = logging.getLogger(__name__)


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


class _Attempt:
    """One attempt in an agent's hands; its flags change under the agent's lock."""

    __slots__ = (
        "abandoned",
        "cancel",
        "finished",
        "inline",
        "reply_to",
        "request",
        "resources",
        "started",
        "worker",
    )

    def __init__(self, request: AttemptRequest, reply_to: Any) -> None:
        self.request = request
        self.reply_to = reply_to
        self.cancel = threading.Event()
        self.inline = request.call is not None and request.isolation == "thread"
        self.started = self.finished = self.abandoned = False
        self.worker: threading.Thread | None = None
        self.resources: Mapping[str, float]  # Dask resources; set by a dask agent only

    @property
    def key(self) -> AttemptKey:
        return (self.request.run_id, self.request.step_id, self.request.attempt)


class AgentActor(pykka.ThreadingActor):
    """Runs attempts on `capacity` worker threads; its own thread never blocks on one.

    Thread-isolated `call` steps run on the worker itself (no thread per call).
    Such a function cannot be interrupted, so when its attempt is cancelled or
    times out the agent abandons that worker: the slot is given back and a new
    worker takes its place, while the old thread ends once the function returns
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
        """`cluster`: run attempts on that Dask cluster (`backend: dask`), asking
        `cluster_resources` for each attempt's Dask resources."""
        super().__init__()
        self.name = name
        self.pool = pool
        self._cluster = cluster
        self._cluster_resources = cluster_resources
        self._lock = threading.Lock()
        self._running: dict[AttemptKey, _Attempt] = {}
        self._work: queue.SimpleQueue[_Attempt | None] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._numbers = itertools.count()
        for _ in range(capacity):
            self._add_worker()

    def _add_worker(self) -> None:
        worker = threading.Thread(
            target=self._work_loop, name=f"wfa-{self.name}-{next(self._numbers)}", daemon=True
        )
        self._workers.append(worker)
        worker.start()

    def on_receive(self, message: Any) -> None:
        match message:
            case StartAttempt(request=request, reply_to=reply_to):
                attempt = _Attempt(request, reply_to)
                if self._cluster is not None:
                    attempt.inline = False  # a cluster attempt's wait is bounded
                    attempt.resources = (
                        self._cluster_resources(attempt.key) if self._cluster_resources else {}
                    )
                with self._lock:
                    self._running[attempt.key] = attempt
                self._work.put(attempt)
            case CancelAttempt(run_id=run_id, step_id=step_id, attempt=number):
                self._cancel((run_id, step_id, number))

    def _cancel(self, key: AttemptKey) -> None:
        with self._lock:
            attempt = self._running.get(key)
            if attempt is None:
                return
            attempt.cancel.set()
            stuck = attempt.inline and attempt.started and not attempt.finished
            if stuck:
                attempt.abandoned = True
                del self._running[key]
                self._workers = [w for w in self._workers if w is not attempt.worker]
        if stuck:
            self.pool.release(key)
            self._add_worker()

    def _work_loop(self) -> None:
        """A worker thread: runs attempts until told to stop or abandoned."""
        while (attempt := self._work.get()) is not None:
            if not self._run(attempt):
                return  # abandoned: another worker has taken this one's place

    def _run(self, attempt: _Attempt) -> bool:
        """Run one attempt to its end (blocks); False if the agent abandoned it meanwhile."""
        request = attempt.request
        with self._lock:
            attempt.started = True
            attempt.worker = threading.current_thread()
        try:
            if attempt.cancel.is_set():
                outcome = failed_outcome(ErrorKind.AGENT, "cancelled before it started")
                outcome = msgspec.structs.replace(outcome, error_kind=None, cancelled=True)
            elif attempt.inline:  # never for a dask agent's attempts
                outcome = run_call_here(request, attempt.cancel)
            elif self._cluster is not None:
                outcome = self._run_on_cluster(self._cluster, attempt)
            else:
                outcome = run_attempt(request, attempt.cancel)
        except Exception as exc:  # a bug in execution must not leave the step hanging
            log.exception("agent %s: attempt %s crashed", self.name, attempt.key)
            outcome = failed_outcome(ErrorKind.AGENT, f"the agent failed: {exc!r}")
        with self._lock:
            attempt.finished = True
            if attempt.abandoned:
                return False
            self._running.pop(attempt.key, None)
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
        return True

    def _run_on_cluster(self, cluster: ClusterConnection, attempt: _Attempt) -> AttemptOutcome:
        return run_attempt_on_cluster(cluster, attempt.request, attempt.cancel, attempt.resources)

    def on_stop(self) -> None:
        with self._lock:
            for attempt in self._running.values():
                attempt.cancel.set()
            workers = list(self._workers)
        for _ in workers:
            self._work.put(None)
        for worker in workers:
            worker.join()
