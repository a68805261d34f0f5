"""SchedulerActor: admits queued runs by priority, and supervises workflow actors.

Queued runs are log records and a heap entry, not actors: an actor (and its
thread) exists only for an admitted run. A workflow actor that crashes is
rebuilt from the log, at most `MAX_RESTARTS` times, so a run whose events
crash the engine cannot take the other runs down with it; then the run is
paused with the error as its reason (`GiveUp`), so that whoever waits on it
learns why, and `wfa resume` tries again.

Concurrency keys: a run of a workflow with `concurrency` is admitted
only while fewer than `limit` runs with its key are active; which queued runs
start is the pure `engine.rules.policies.concurrency.admissible`. Runs that had
started before a restart hold their slot and are admitted first, so the limit
holds across restarts, counted from the log.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

import pykka

from actors.messages import AdmitChild, AdmitRun, DeliverCommand, RunEnded, StopRuns
from actors.quiet import Accounted
from actors.workflow import WorkflowActor
from engine.rules.decide import Cancel
from engine.rules.policies.concurrency import Candidate, admissible

if TYPE_CHECKING:
    from actors.runtime import Runtime

log = logging.getLogger(__name__)

MAX_RESTARTS = 3


class SchedulerActor(Accounted, pykka.ThreadingActor):
    """Runs on its own thread; never waits on a workflow actor except when stopping."""

    def __init__(self, runtime: Runtime, max_concurrent: int) -> None:
        super().__init__()
        self.runtime = runtime
        runtime.track(self)
        self.max_concurrent = max_concurrent
        self._queue: list[tuple[int, int, str]] = []
        self._queued: set[str] = set()
        self._active: dict[str, pykka.ActorRef[Any]] = {}
        self._order = itertools.count()
        self._restarts: Counter[str] = Counter()
        self._held: dict[str, list[Any]] = {}  # commands for runs not admitted yet
        self._stopping = False
        self._candidates: dict[str, Candidate] = {}  # queued and active runs with a key

    def on_receive(self, message: Any) -> None:
        match message:
            case AdmitRun(run_id=run_id, priority=priority, commands=commands):
                if commands:
                    self._held.setdefault(run_id, []).extend(commands)
                if run_id not in self._active and run_id not in self._queued:
                    candidate = self.runtime.admission_candidate(run_id)
                    if candidate.key is not None:
                        self._candidates[run_id] = candidate
                    self._queued.add(run_id)
                    heapq.heappush(self._queue, (-priority, next(self._order), run_id))
                self._cancel_queued(run_id)
                self._admit()
            case RunEnded(run_id=run_id, crashed=crashed, error=error):
                self._active.pop(run_id, None)
                if not crashed:
                    self._candidates.pop(run_id, None)
                if crashed and not self._stopping:
                    self._restarts[run_id] += 1
                    if self._restarts[run_id] <= MAX_RESTARTS:
                        self._start(run_id)
                    else:
                        log.error("run %s: given up after %d crashes", run_id, MAX_RESTARTS)
                        del self._restarts[run_id]  # a resume gets restarts again
                        self._candidates.pop(run_id, None)  # and is admitted afresh
                        self.runtime.give_up(run_id, MAX_RESTARTS, error)
                self._admit()
            case DeliverCommand(run_id=run_id):
                ref = self._active.get(run_id)
                if ref is not None:
                    ref.tell(message)
                elif run_id in self._queued:
                    self._held.setdefault(run_id, []).append(message.trigger)
                    self._cancel_queued(run_id)
            case AdmitChild(run_id=run_id):
                if run_id not in self._active and not self._stopping:
                    self._queued.discard(run_id)  # its heap entry is skipped when popped
                    self._start(run_id)
            case StopRuns():
                self._stopping = True
                self._queue.clear()
                self._queued.clear()
                for ref in list(self._active.values()):
                    ref.stop(block=True)
                self._active.clear()

    def _admit(self) -> None:
        if self._candidates and any(r in self._candidates for r in self._queued):
            self._admit_by_keys()
            return
        while not self._stopping and self._queue and len(self._active) < self.max_concurrent:
            _, _, run_id = heapq.heappop(self._queue)
            if run_id in self._queued:  # else admitted meanwhile as a child
                self._queued.discard(run_id)
                self._start(run_id)

    def _cancel_queued(self, run_id: str) -> None:
        """A queued run with a cancel held starts now, whatever holds it (a full key, no
        slot): its actor ends it without starting it, and nobody waits for its turn."""
        if run_id in self._queued and any(
            isinstance(c, Cancel) for c in self._held.get(run_id, ())
        ):
            self._queue = [entry for entry in self._queue if entry[2] != run_id]
            heapq.heapify(self._queue)
            self._queued.discard(run_id)
            self._start(run_id)

    def _admit_by_keys(self) -> None:
        """Admit in queue order, passing over runs whose concurrency key is full."""
        free = self.max_concurrent - len(self._active)
        if self._stopping or free <= 0:
            return
        order = sorted(self._queue)
        queue = [self._candidates.get(r, Candidate(r)) for _, _, r in order]
        running = [self._candidates[r].key for r in self._active if r in self._candidates]
        chosen = admissible(queue, running, free)
        picked = set(chosen)
        self._queue = [entry for entry in order if entry[2] not in picked]  # sorted: a heap
        for run_id in chosen:
            self._queued.discard(run_id)
            self._start(run_id)

    def _start(self, run_id: str) -> None:
        held = self._held.pop(run_id, [])
        self._active[run_id] = WorkflowActor.start(run_id, self.runtime, held)
