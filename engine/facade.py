"""The Engine: the Python API (the README's Embedding section), and what the CLI drives.

An `Engine` opens a data directory. If no other engine drives it, this one
takes the directory's lock and drives runs with the actor runtime; otherwise
it is a client: it submits runs and commands to the log, and the engine that
holds the lock acts on them (it follows the log). Either way every change is
an event appended to the log before anything acts on it, and every read is a
fold of the log. Which runs exist, and which are incomplete, comes from the run
index (engine/run_index.py), so start-up and listing cost what they return.


Who drives, when several processes use one directory: the lock holder drives
every run in it. It never hands a run over mid-attempt (a step's process lives
and dies with the engine that started it), so a process that is done with its
own runs calls `finish_held_runs()` before `close()`: it admits nothing new and
keeps driving what it holds until each run has ended or waits for a person. A
client that may drive (`drive=True`) calls `take_over()` while it follows: once
the lock is free (its holder finished or died) it drives, recovering every
incomplete run. Handing over only at quiet points costs the first process some
waiting; in return no step is ever killed or run twice by a hand-over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from engine.async_changes import AsyncChanges
from engine.child_runs import waits_for_people
from engine.input.builder import Workflow
from engine.input.child_files import with_registered
from engine.input.datadir import (
    EVENTS,
    EngineLock,
    LockHolder,
    check_data_dir,
    new_run_id,
    not_writable,
    writable,
)
from engine.input.loading import load_config
from engine.input.validation import check_inputs, check_workflow, load_checked
from engine.rules import decide as rules
from engine.rules.config import EngineConfig
from engine.rules.errors import Problem, ValidationError, WorkflowAutomatorError
from engine.rules.events import (
    COMMANDS_STREAM,
    CacheCleared,
    CommandIssued,
    Event,
    RunSettings,
    RunSubmitted,
    run_stream,
)
from engine.rules.input_types import coerce_inputs, input_defaults, struct_problems
from engine.rules.policies.caching import CACHE_STREAM, CacheIndex
from engine.rules.policies.health import HealthPolicy
from engine.rules.results import RunResult, result_of
from engine.rules.spec import WorkflowSpec
from engine.rules.state import TERMINAL_RUN, InvalidTransition, RunState, evolve, fold, index_of
from engine.rules.submission import check_run_id, same_submission, signal_problems
from engine.rules.values import MAX_EVENT_BYTES, unloggable
from engine.run_index import (
    RunIndexer,
    command_positions,
    incomplete_runs,
    list_runs,
    missing_run,
)
from eventstore import (
    ConcurrencyError,
    CorruptStoreError,
    EventStore,
    PayloadTooLargeError,
    Recorded,
)

if TYPE_CHECKING:
    from actors.clock import Clock
if TYPE_CHECKING:  # what only a driving engine starts, imported when it starts (reads stay light)
    from actors.monitors.alerts import AlertMonitor
    from engine.telemetry.observer import Observer

log = logging.getLogger("wfa")
log.addHandler(logging.NullHandler())

FOLLOW_GATHER = 0.005
"""Seconds the engine's follower waits after reading new events before it reads
again: a busy log is read in batches instead of on every commit (where the
follower, and the `wait()`ers it wakes, competed with the runs for the GIL).
Runs are admitted, commands delivered and waiters woken at most this much later."""


class UnknownRunError(WorkflowAutomatorError):
    """No run with that id in this data directory."""


def command_trigger(command: CommandIssued) -> Any:
    """The decide trigger an operator's logged command stands for."""
    match command.command:
        case "approve":
            return rules.Approve(step_id=command.step_id or "")
        case "retry":
            return rules.RetryStep(step_id=command.step_id or "")
        case "skip":
            return rules.SkipStep(step_id=command.step_id or "", outputs=command.outputs)
        case "cancel":
            return rules.Cancel()
        case "resume":
            return rules.Resume()
        case "signal":
            return rules.Signal(name=command.signal or "", data=command.outputs)
    raise WorkflowAutomatorError(f"unknown command {command.command!r} in the log")


class RunPage(list[RunResult]):
    """A page of `Engine.runs`: a list of results, newest first, and the cursor to
    pass as `before=` for the next page (None: there is none). `damaged`: the ids
    of the page's runs whose history does not fold, left out of the list
    (`Engine.state` of one raises `InvalidTransition`, saying why)."""

    next_before: str | None = None

    def __init__(self, results: Iterable[RunResult] = (), damaged: Iterable[str] = ()) -> None:
        super().__init__(results)
        self.damaged = list(damaged)


class RunHandle:
    """A run in the log; `wait()` follows it until it ends or needs a person."""

    def __init__(self, engine: Engine, run_id: str) -> None:
        self.engine = engine
        self.id = run_id

    def __repr__(self) -> str:
        return f"RunHandle({self.id!r})"

    def result(self) -> RunResult:
        return result_of(self.engine.state(self.id))

    def wait(self, timeout: float | None = None) -> RunResult:
        """Block until the run ends or waits for an operator; TimeoutError after `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        follower = _StateFollower(self.engine.store, self.id)
        while True:
            generation = self.engine._generation
            done = _waited_for(follower)
            if done is not None:
                return done
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise _still(follower, timeout)
            self.engine._wait_for_change(
                generation, 0.1 if remaining is None else min(0.1, remaining)
            )

    async def wait_async(self, timeout: float | None = None) -> RunResult:
        """`wait()` for asyncio code: never blocks the loop and holds no thread.

        It awaits the engine's wake-up after each batch of events (a future set through
        `loop.call_soon_threadsafe`) and reads the run's new events on the loop (a
        read of the memory-mapped log, like `result()`).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        follower = _StateFollower(self.engine.store, self.id)
        changes = self.engine._async_changes
        while True:
            change = changes.next_change()
            try:
                done = _waited_for(follower)
                if done is not None:
                    return done
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    raise _still(follower, timeout)
                await asyncio.wait(
                    {change}, timeout=0.1 if remaining is None else min(0.1, remaining)
                )
            finally:
                changes.forget(change)


def _waited_for(follower: _StateFollower) -> RunResult | None:
    """After reading the run's new events: its result if `wait` is over (the run ended,
    or only a person can move it on), else None."""
    moved = follower.refresh()
    state = follower.state
    assert state is not None
    if state.status in TERMINAL_RUN:
        return result_of(state)
    # Whether only a person can move it on is an O(steps) question: ask it
    # only when the run is quiet, not on every event of a busy run.
    if not moved:
        result = result_of(state)
        if waits_for_people(follower.store, result) and not follower.command_pending():
            return result
    return None


def _still(follower: _StateFollower, timeout: float | None) -> TimeoutError:
    state = follower.state
    assert state is not None
    return TimeoutError(f"run {follower.run_id} is still {state.status} after {timeout} s")


class _StateFollower:
    """Folds one run stream incrementally: each refresh reads only what is new."""

    def __init__(self, store: EventStore[Any], run_id: str) -> None:
        self.store, self.run_id, self.stream = store, run_id, run_stream(run_id)
        self.state: RunState | None = None
        self.version = 0
        self.position = 0  # of the run's last event
        self.commands_seen = 0  # version in the commands stream
        self.last_command = 0  # position of the run's last command
        self.damage: InvalidTransition | None = None  # the history does not fold

    def refresh(self) -> bool:
        """Fold what is new; True if there was anything."""
        if self.damage is not None:  # the state is half changed by the event that failed
            raise self.damage
        before = self.version
        try:
            for rec in self.store.read_stream(self.stream, self.version + 1):
                self.state = evolve(self.state, rec.event)
                self.version, self.position = rec.version, rec.position
        except InvalidTransition as exc:
            self.damage = exc
            raise
        if self.state is None:
            raise UnknownRunError(missing_run(self.store, self.run_id, self.store.path))
        return self.version != before

    def command_pending(self) -> bool:
        """An operator's command for this run is logged but the run has not moved since."""
        for rec in self.store.read_stream(COMMANDS_STREAM, self.commands_seen + 1):
            self.commands_seen = rec.version
            if rec.event.run_id == self.run_id:
                self.last_command = rec.position
        return self.last_command > self.position


class Engine:
    """Submit, follow, inspect and steer runs in one data directory.

    `drive=True` (the default) drives runs in this process when no other
    engine holds the directory. `health_policy` tunes the agents' circuit
    breaker (failures in a row, cool-down); the config file has no key for it.
    `clock` is the time every timer and recorded time reads (actors/clock.py);
    tests pass `engine.testing.FakeClock`.
    Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        config: EngineConfig | str | os.PathLike[str] | None = None,
        *,
        drive: bool = True,
        create: bool = True,
        health_policy: HealthPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        if clock is None:
            from actors.clock import SYSTEM_CLOCK  # the facade meets actors lazily

            clock = SYSTEM_CLOCK
        self.clock: Clock = clock
        self.config = (
            config if isinstance(config, EngineConfig) else load_config(config, os.environ)
        )
        where = data_dir or os.environ.get("WFA_DATA") or self.config.storage.path
        self.data_dir = check_data_dir(Path(where), create=create)
        readonly = not writable(self.data_dir)
        if readonly and (drive or create):  # only a reader that creates nothing may read
            raise not_writable(self.data_dir)
        self.store: EventStore[Any] = EventStore.open(
            self.data_dir / EVENTS,
            Event,
            durability=self.config.storage.durability.value,
            max_payload=MAX_EVENT_BYTES,
            create=create,
            indexer=RunIndexer(),
            readonly=readonly,
        )
        self._changed = threading.Condition()
        self._async_changes = AsyncChanges()  # coroutines in wait_async(), woken with the threads
        self._generation = 0
        self._functions: dict[str, Any] = {}
        self._workflows: dict[str, WorkflowSpec] = {}  # registered: child workflows by name
        self._lock = EngineLock(self.data_dir)
        self._runtime: Any = None
        self._observer: Observer | None = None
        self._alerts: AlertMonitor | None = None
        self._stop = threading.Event()
        self._health_policy = health_policy  # the agents' circuit breaker; defaults if None
        self._may_drive = drive
        # Runs this engine admitted, followed by `finish_held_runs`; while finishing,
        # new submissions are left to their submitters and, at the very end, commands
        # are held back (they stay in the log for the next engine's recovery).
        self._held: dict[str, _StateFollower] = {}
        self._gate = threading.Lock()
        self._finishing = False
        self._holding_back: list[CommandIssued] | None = None
        self._follower: threading.Thread | None = None
        self._followed = 0  # the last log position the follower has acted on
        try:  # a log found damaged here must not leave the actors it started running
            if drive and self._lock.acquire():
                self._start_driving()
            start = self.store.last_position() + 1
            self._followed = start - 1
            if self._runtime is not None:
                self.recover()
        except BaseException:
            self.close()
            raise
        self._follower = threading.Thread(
            target=self._follow, args=(start,), name="wfa-follow", daemon=True
        )
        self._follower.start()

    # -- lifecycle -----------------------------------------------------------

    def _start_driving(self) -> None:
        """This process holds the lock: start the runtime, live telemetry and alerts."""
        from actors.monitors.alerts import AlertMonitor
        from actors.runtime import Runtime  # the facade is the one place engine meets actors
        from engine.telemetry.observer import Observer

        try:
            self._observer = Observer(
                self.config,
                events_dir=self.data_dir / EVENTS,
                start_position=self.store.last_position() + 1,
            )
        except OSError as exc:
            self._lock.release()
            self.store.close()
            port = self.config.telemetry.prometheus_port
            raise WorkflowAutomatorError(
                f"cannot serve metrics on 127.0.0.1:{port}: {exc}; "
                "set telemetry.prometheus_port to a free port, or to null"
            ) from None
        try:
            self._runtime = Runtime(
                self.store,
                self.config,
                self.data_dir,
                self._observer.on_batch,
                usage_report=self._observer.set_resource_usage,
                health_policy=self._health_policy,
                after_crash=self._lock.previous_crashed,
                clock=self.clock,
            )
        except BaseException:  # e.g. a dask agent without dask installed: leave nothing open
            self._observer.close()
            self._lock.release()
            self.store.close()
            raise
        self._alerts = AlertMonitor(self.store, self.config.monitoring)
        self._alerts.start()

    @property
    def drives(self) -> bool:
        """True if this engine runs the steps; False if another engine does."""
        return self._runtime is not None

    def holder(self) -> LockHolder | None:
        """The process that drives this directory now (maybe this one); None if none does."""
        return self._lock.holder()

    def take_over(self) -> bool:
        """Drive here if this engine may and the lock is free (its holder ended or died).

        Recovers every incomplete run, as on start. True if this engine drives now.
        """
        if self._runtime is not None:
            return True
        if not self._may_drive or self._stop.is_set() or not self._lock.acquire():
            return False
        self._start_driving()
        self.recover()
        return True

    def open_held_runs(self) -> list[str]:
        """Runs this engine drives that neither ended nor only wait for a person."""
        with self._gate:
            followers = list(self._held.values())
        return [f.run_id for f in followers if not _quiet(f)]

    def finish_held_runs(self) -> None:
        """Admit no new runs; drive those held until each ended or waits for a person.

        Returns once that holds with every command delivered, and from then on
        holds commands back, so that `close()` stops no step: what arrives later
        stays in the log for the next engine. The runs left waiting for a person
        are resumed by whichever process next drives the directory.
        """
        if self._runtime is None:
            return
        with self._gate:
            self._finishing = True
        while True:
            generation = self._generation
            if not self.open_held_runs():
                with self._gate:
                    self._holding_back = []
                if not self.open_held_runs():
                    return
                with self._gate:  # a command came in meanwhile: deliver it, go on
                    for command in self._holding_back or []:
                        self._runtime.deliver(command.run_id, command_trigger(command))
                    self._holding_back = None
            self._wait_for_change(generation, 0.1)

    def close(self) -> None:
        """Stop driving (runs stay resumable), stop every thread, close the log."""
        self._stop.set()
        if self._runtime is not None:
            self._runtime.stop()
            self._runtime = None
        if self._alerts is not None:
            self._alerts.stop()
        if self._observer is not None:
            self._observer.close()  # waits at most ~2 s for the trace exporter process
        if self._follower is not None:
            self._follower.join(timeout=5)
        self._lock.release()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submitting ----------------------------------------------------------

    def submit(
        self,
        workflow: WorkflowSpec | Workflow | str | os.PathLike[str],
        inputs: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        workflow_dir: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """Validate and queue a run; nothing is written for an invalid workflow.

        `call:` code is imported from `workflow_dir` (default: the directory of
        the workflow file, when `workflow` is a path) and the working directory.
        `run_id` names the run (engine/rules/submission.py): if that run exists with the
        same workflow and inputs, its handle is returned and nothing is written;
        with different ones, ValidationError names the difference.
        """
        if run_id is not None:
            check_run_id(run_id)
        spec = self._spec(workflow)
        if workflow_dir is None and isinstance(workflow, str | os.PathLike):
            workflow_dir = os.path.dirname(os.fspath(workflow))
        code_dir = None if workflow_dir is None else os.path.abspath(workflow_dir)
        struct = workflow.inputs_type if isinstance(workflow, Workflow) else None
        inputs = self._inputs(spec, inputs or {}, struct)
        return self._submit(spec, inputs, priority=priority, workflow_dir=code_dir, run_id=run_id)

    async def submit_async(
        self,
        workflow: WorkflowSpec | Workflow | str | os.PathLike[str],
        inputs: Mapping[str, Any] | None = None,
        *,
        priority: int | None = None,
        workflow_dir: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        """`submit` for asyncio code. Validation reads files and the append waits for its
        commit to be durable, so both run on a worker thread, for that long only."""
        return await asyncio.to_thread(
            self.submit,
            workflow,
            inputs,
            priority=priority,
            workflow_dir=workflow_dir,
            run_id=run_id,
        )

    def register(self, workflow: Workflow) -> None:
        """Make a Python workflow's functions known (for runs resumed by this engine), and
        its name one that a step's `workflow:` may run as a child."""
        self._functions.update(workflow.functions)
        self._workflows[workflow.name] = workflow.spec

    def restart(self, run_id: str, from_step: str | None = None) -> RunHandle:
        """A new run of the same spec and inputs, reusing outputs of steps not after `from_step`.

        Without `from_step`, every step that succeeded is reused and the rest runs again.
        """
        old = self.state(run_id)
        rerun: set[str] = set()
        if from_step is not None:
            if from_step not in index_of(old).specs:
                raise ValidationError(
                    [Problem("--from", f"no step {from_step!r} in run {run_id}")], source=run_id
                )
            rerun = _downstream(old, from_step)
        reused = {
            sid: st.outputs
            for sid, st in old.steps.items()
            if st.parent is None and st.status.value == "succeeded" and sid not in rerun
        }
        return self._submit(
            old.spec,
            old.inputs,
            reused=reused,
            parent=run_id,
            workflow_dir=old.settings.workflow_dir,
        )

    # -- steering ------------------------------------------------------------

    def approve(self, run_id: str, step_id: str) -> None:
        """Let a step that waits for approval run."""
        self._command(run_id, "approve", step_id)

    def retry(self, run_id: str, step_id: str) -> None:
        """Run a failed or paused step again, with a fresh retry budget."""
        self._command(run_id, "retry", step_id)

    def skip(self, run_id: str, step_id: str, outputs: Any = None) -> None:
        """Skip a step; `outputs` stand in for its outputs so that its dependents run."""
        if why := unloggable(outputs):
            raise ValidationError([Problem("--outputs", *why)], source=run_id)
        self._command(run_id, "skip", step_id, outputs)

    def cancel(self, run_id: str) -> None:
        self._command(run_id, "cancel")

    def signal(self, run_id: str, name: str, data: Mapping[str, Any] | None = None) -> None:
        """Send signal `name` to a run, from any process; `data` (a JSON object) becomes
        the outputs of the step that waits for it (`wait_for: {signal: name}`). A signal
        that no step waits for yet is kept until one does."""
        problems = signal_problems(name, data)
        if problems:
            raise ValidationError(problems, source=run_id)
        self._command(run_id, "signal", outputs=msgspec.to_builtins(dict(data or {})), signal=name)

    def resume_run(self, run_id: str) -> None:
        """Continue a paused run, accepting its paused steps' failures."""
        self._command(run_id, "resume")

    def recover(self) -> list[str]:
        """Admit every incomplete run in the log, with the commands it has not seen yet.

        Done on start by a driving engine. A command logged after a run's last
        event was issued while no engine drove the run (or just before a crash):
        it is delivered again, and one that no longer applies is ignored.
        """
        if self._runtime is None:
            return []
        found = []
        for row in incomplete_runs(self.store):  # from the run index: O(incomplete runs)
            info = self.store.stream_info(run_stream(row.run_id))
            last = 0 if info is None else info.last_position
            unseen = self.store.read_positions(command_positions(self.store, row.run_id, last))
            commands = tuple(command_trigger(rec.event) for rec in unseen)
            self._admit(row.run_id, row.priority, commands)
            found.append(row.run_id)
        return found

    def _admit(self, run_id: str, priority: int, commands: tuple[Any, ...] = ()) -> None:
        with self._gate:
            if self._finishing:
                return  # its submitter takes over once this engine has let go
            self._held.setdefault(run_id, _StateFollower(self.store, run_id))
        self._runtime.admit(run_id, priority, commands)

    # -- reading -------------------------------------------------------------

    def handle(self, run_id: str) -> RunHandle:
        if self.store.stream_version(run_stream(run_id)) == 0:
            raise UnknownRunError(missing_run(self.store, run_id, self.data_dir))
        return RunHandle(self, run_id)

    def state(self, run_id: str, at: float | int | None = None) -> RunState:
        """The run's state folded from the log; `at`: a log position (int) or a unix time."""
        records = self.history(run_id)
        if at is not None:
            by_position = isinstance(at, int)
            records = [r for r in records if (r.position if by_position else r.recorded_at) <= at]
            if not records:
                raise ValidationError(
                    [Problem("--at", f"run {run_id} had not been submitted yet at {at}")],
                    source=run_id,
                )
        return fold(r.event for r in records)

    def replay(self, run_id: str, at: float | int | None = None) -> RunResult:
        return result_of(self.state(run_id, at))

    def history(self, run_id: str) -> list[Recorded[Any]]:
        records = list(self.store.read_stream(run_stream(run_id)))
        if not records:
            raise UnknownRunError(missing_run(self.store, run_id, self.data_dir))
        return records

    def runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        *,
        since: float | None = None,
        before: str | float | None = None,
        limit: int | None = None,
    ) -> RunPage:
        """Runs newest first (by submission time), from the run index; each folded.

        `since`: submitted at or after this unix time; `before`: a run id (the page
        continues after it: pass the previous page's `next_before`) or a unix time;
        `limit`: at most this many (None: all). The page's `next_before` is the
        cursor of the next page, None when this one is the last.
        """
        if isinstance(before, str) and self.store.stream_version(run_stream(before)) == 0:
            raise UnknownRunError(f"no run {before!r} in {self.data_dir}")
        rows = list_runs(
            self.store, status=status, workflow=workflow, since=since, before=before, limit=limit
        )
        results, damaged = [], []
        for row in rows:
            try:
                results.append(result_of(self.state(row.run_id)))
            except InvalidTransition:
                damaged.append(row.run_id)
        page = RunPage(results, damaged)
        if limit is not None and len(rows) == limit and rows:
            page.next_before = rows[-1].run_id
        return page

    def export(self, since: int = 1) -> Iterator[Recorded[Any]]:
        return self.store.read_all(since)

    # -- the step cache ------------------------------------------------------

    def clear_cache(self) -> int:
        """Empty the step cache (a `CacheCleared` event); how many live entries it held.

        Works whether or not this engine drives: a driving engine follows the
        cache stream and forgets every entry stored before the event.
        """
        now = self.clock.now()
        index = CacheIndex.from_events(r.event for r in self.store.read_stream(CACHE_STREAM))
        index.prune(now)
        self.store.append(CACHE_STREAM, [CacheCleared(at=now)])
        return len(index)

    # -- inside --------------------------------------------------------------

    def _spec(self, workflow: WorkflowSpec | Workflow | str | os.PathLike[str]) -> WorkflowSpec:
        if isinstance(workflow, Workflow):
            self.register(workflow)
            spec = workflow.spec
        elif isinstance(workflow, WorkflowSpec):
            spec = workflow
        else:
            return load_checked(workflow, self.config, registered=self._workflows)
        spec = with_registered(spec, self._workflows)
        check_workflow(spec, self.config)
        return spec

    @staticmethod
    def _inputs(
        spec: WorkflowSpec, given: Mapping[str, Any], struct: type[msgspec.Struct] | None = None
    ) -> dict[str, Any]:
        """The run's inputs: defaults, then `given` checked (by `struct` too, a Python
        workflow's inputs type) and held as their declared types (engine/input_types.py)."""
        plain = msgspec.to_builtins(dict(given))
        problems = []  # a Struct's own errors first: they name the path inside an input
        if struct is not None:
            problems = struct_problems(struct, {**input_defaults(spec.inputs), **plain})
        problems = problems or check_inputs(spec, plain)
        if problems:
            raise ValidationError(problems, source=spec.name)
        return {**input_defaults(spec.inputs), **coerce_inputs(spec.inputs, plain)}

    def _submit(
        self,
        spec: WorkflowSpec,
        inputs: dict[str, Any],
        *,
        priority: int | None = None,
        reused: dict[str, Any] | None = None,
        parent: str | None = None,
        workflow_dir: str | None = None,
        run_id: str | None = None,
    ) -> RunHandle:
        if priority is not None:
            spec = msgspec.structs.replace(spec, priority=priority)
        execution = self.config.execution
        chosen, run_id = run_id is not None, run_id or new_run_id()
        if chosen and (existing := self._submitted(run_id)) is not None:
            same_submission(existing, spec, inputs)
            return RunHandle(self, run_id)
        submitted = RunSubmitted(
            at=self.clock.now(),
            run_id=run_id,
            spec=spec,
            inputs=inputs,
            settings=RunSettings(
                default_timeout=execution.default_timeout,
                default_retry_count=execution.default_retry_count,
                enable_parallel_execution=execution.enable_parallel_execution,
                workflow_dir=workflow_dir,
                max_interrupted_attempts=execution.max_interrupted_attempts,
            ),
            reused=reused or {},
            parent_run_id=parent,
        )
        try:
            self.store.append(run_stream(run_id), [submitted], expected_version=0)
        except ConcurrencyError:  # another process submitted this id first
            if not chosen or (existing := self._submitted(run_id)) is None:
                raise
            same_submission(existing, spec, inputs)
        except PayloadTooLargeError as exc:  # inputs fit (check_inputs): a huge workflow
            problem = Problem(
                "$",
                f"the run's submission (its workflow and inputs) takes {exc.size:,} bytes, "
                f"more than one event of the log holds ({exc.limit:,})",
                "split the workflow, or keep large data in files",
            )
            raise ValidationError([problem], source=spec.name) from None
        return RunHandle(self, run_id)

    def _submitted(self, run_id: str) -> RunSubmitted | None:
        """The run's RunSubmitted, if that run exists."""
        first = next(iter(self.store.read_stream(run_stream(run_id))), None)
        return None if first is None else first.event

    def _command(
        self,
        run_id: str,
        verb: str,
        step_id: str | None = None,
        outputs: Any = None,
        signal: str | None = None,
    ) -> None:
        """Check the command applies now (else CommandNotApplicable), then log it."""
        now = self.clock.now()
        command = CommandIssued(
            at=now, run_id=run_id, command=verb, step_id=step_id, outputs=outputs, signal=signal
        )
        rules.decide(self.state(run_id), command_trigger(command), now)
        self.store.append(COMMANDS_STREAM, [command])

    def _follow(self, start: int) -> None:
        """Follower thread: admit submitted runs, deliver commands, wake waiters.

        A damaged log ends it quietly: the store then refuses every use, so the
        caller's next read or append raises the damage where it can be reported.
        """
        try:
            self._follow_records(start)
        except CorruptStoreError:
            self._notify()

    def _follow_records(self, start: int) -> None:
        for record in self.store.follow(start, stop=self._stop, gather=FOLLOW_GATHER):
            event = record.event
            runtime = self._runtime
            if runtime is not None:
                if record.stream == CACHE_STREAM:
                    runtime.cache.apply(event)
                elif isinstance(event, RunSubmitted):
                    self._admit(event.run_id, event.spec.priority)
                elif isinstance(event, CommandIssued):
                    with self._gate:
                        if self._holding_back is not None:
                            self._holding_back.append(event)
                        else:
                            runtime.deliver(event.run_id, command_trigger(event))
            self._followed = record.position
            self._notify()

    def idle(self) -> bool:
        """This engine drives, and nothing it drives can move until a timer fires: the
        log is followed to its end, no attempt runs and no actor has work. What a fake
        clock's auto-skip (engine.testing) waits for before it jumps to the next timer."""
        runtime = self._runtime
        if runtime is None:
            return False
        end = self.store.last_position()
        return self._followed >= end and runtime.quiet()

    def _notify(self) -> None:
        with self._changed:
            self._generation += 1
            self._changed.notify_all()
        self._async_changes.notify()

    def _wait_for_change(self, generation: int, timeout: float) -> None:
        with self._changed:
            if self._generation == generation:
                self._changed.wait(timeout)


def _quiet(follower: _StateFollower) -> bool:
    """The run has ended, or waits only for a person and has no command in flight (or
    its history, or that of a child it waits for, does not fold: nothing moves it on,
    and each reader of it says why)."""
    try:
        follower.refresh()
        state = follower.state
        assert state is not None
        if state.status in TERMINAL_RUN:
            return True
        quiet = waits_for_people(follower.store, result_of(state))
    except InvalidTransition:
        return True
    return quiet and not follower.command_pending()


def _downstream(state: RunState, step_id: str) -> set[str]:
    """`step_id` and every step that depends on it, transitively."""
    dependents = index_of(state).dependents
    found, todo = {step_id}, [step_id]
    while todo:
        for nxt in dependents[todo.pop()]:
            if nxt not in found:
                found.add(nxt)
                todo.append(nxt)
    return found
