"""engine.testing: test your own workflows, fast, with the real engine.

`run_workflow(wf)` runs a workflow to its end in a temporary data directory,
on the real engine (real log, real actors, real steps), with a `FakeClock`
that skips time: when nothing can move but a timer (no attempt runs, no actor
has work), the clock jumps to that timer. A step that retries after an hour,
sleeps a day and times out after a week finishes in a moment of real time,
and the log says the hour, the day and the week passed.

`FakeClock` alone is for tests that step time by hand: pass it to
`Engine(clock=...)` and call `advance(seconds)`. What a fake clock does not
change (a step's own kill deadline inside its agent, measured durations,
waits on sockets and processes) is listed in actors/clock.py: a step that
really sleeps still takes real time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import msgspec

from actors.context import StepContext
from engine.facade import Engine, RunHandle
from engine.input.builder import Workflow
from engine.rules import events as ev
from engine.rules import results
from engine.rules.config import Durability, EngineConfig, StorageConfig
from engine.rules.errors import ErrorKind, ValidationError, WorkflowAutomatorError
from engine.rules.input_types import input_defaults, struct_problems
from engine.rules.spec import WorkflowSpec

__all__ = ["Fail", "FailedAttempt", "FakeClock", "RunResult", "run_workflow"]

SKIP_POLL: Final = 0.001
"""Real seconds between two looks at whether the engine is idle: it must be idle at
two looks in a row, with the same timer awaited, before the clock jumps."""

RUN_LIMIT: Final = 120.0
"""Real seconds `run_workflow` waits for a run before it gives up (nothing hangs)."""

START: Final = 1_800_000_000.0
"""Where a FakeClock starts by default: 2027-01-15T08:00:00Z, a fixed, plausible time."""


class FakeClock:
    """A clock that moves only when told: `advance(seconds)`, or by skipping to timers.

    Give it to one `Engine(clock=...)`; its timer thread then waits on this
    clock's time, not the wall's. Thread-safe.
    """

    def __init__(self, start: float = START) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._waits: weakref.WeakKeyDictionary[threading.Condition, float] = (
            weakref.WeakKeyDictionary()
        )
        """The timer threads waiting on this clock, and the time each waits for."""

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (not backward): timers now due fire."""
        if not seconds >= 0:
            raise ValueError(f"advance({seconds!r}): time only moves forward; pass seconds >= 0")
        with self._lock:
            self._now += seconds
            waiting = list(self._waits)
        for wake in waiting:
            with wake:
                wake.notify_all()

    def wait(self, wake: threading.Condition, at: float) -> None:
        """The timer thread's sleep (with `wake` held): until `advance` or a new timer."""
        with self._lock:
            self._waits[wake] = at
        try:
            wake.wait(timeout=60.0)  # advance() notifies; the timeout only re-reads
        finally:
            with self._lock:
                self._waits.pop(wake, None)

    def next_timer(self) -> float | None:
        """The earliest time a timer thread waits for, if one waits."""
        with self._lock:
            return min(self._waits.values(), default=None)

    @contextlib.contextmanager
    def skipping(self, idle: Callable[[], bool]) -> Iterator[None]:
        """While inside: whenever `idle()` (e.g. `engine.idle`) holds and a timer is
        awaited, jump to that timer. `idle` must be true only when nothing but a timer
        can move, or the jump would skip past work still to be done."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self._skip, args=(idle, stop), name="wfa-fake-clock", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def _skip(self, idle: Callable[[], bool], stop: threading.Event) -> None:
        seen: float | None = None  # the timer awaited at the last look, if idle then
        while not stop.wait(SKIP_POLL):
            at = self.next_timer()
            if at is None or at == float("inf") or not idle():
                seen = None
                continue
            if seen != at:  # idle once: look again before jumping
                seen = at
                continue
            seen = None
            self.advance(max(0.0, at - self.now()))


class Fail(msgspec.Struct, frozen=True):
    """An override that makes a step's attempts fail with `kind` (user, network,
    resource or output). `times`: only the first so many attempts fail, then the
    step's own code runs (for a `call` step) or it succeeds with {} (others)."""

    kind: ErrorKind | str = ErrorKind.USER
    message: str = "failed by a test override"
    times: int | None = None


class FailedAttempt(msgspec.Struct, frozen=True):
    step_id: str
    attempt: int
    kind: ErrorKind
    message: str
    at: float


class RunResult(results.RunResult, frozen=True, kw_only=True):
    """The run's result (as `RunHandle.wait()` gives it) with every event of its log."""

    events: tuple[Any, ...] = ()

    def events_of(self, *types: type) -> list[Any]:
        """The run's events of these types (e.g. `ev.RetryScheduled`), in log order."""
        return [e for e in self.events if isinstance(e, types)]

    def step_order(self) -> list[str]:
        """Step ids in the order their first attempts started (cache hits and sleeps
        count from when they began)."""
        order: dict[str, None] = {}
        for event in self.events_of(ev.AttemptStarted, ev.StepSleeping, ev.StepSucceeded):
            order.setdefault(event.step_id, None)
        return list(order)

    def failed_attempts(self, step_id: str | None = None) -> list[FailedAttempt]:
        """Every attempt that failed (of one step, if given), with its kind, in order."""
        return [
            FailedAttempt(e.step_id, e.attempt, e.kind, e.message, e.at)
            for e in self.events_of(ev.AttemptFailed)
            if step_id is None or e.step_id == step_id
        ]

    def assert_succeeded(self) -> None:
        """Raise AssertionError naming the failed steps and their errors, unless it succeeded."""
        if self.status != "succeeded":
            failures = "; ".join(
                f"{s.id}: {s.error.kind} {s.error.message}" if s.error else f"{s.id}: {s.status}"
                for s in self.steps.values()
                if s.status not in ("succeeded", "skipped")
            )
            raise AssertionError(f"run {self.run_id} {self.status}: {self.reason}; {failures}")


_OVERRIDE: Final = "engine.testing:overridden_step"
_KINDS: Final = {
    ErrorKind.USER: RuntimeError,
    ErrorKind.NETWORK: ConnectionError,
    ErrorKind.RESOURCE: MemoryError,
}


def run_workflow(
    wf: Workflow | WorkflowSpec | str | os.PathLike[str],
    inputs: Mapping[str, Any] | None = None,
    *,
    skip_time: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> RunResult:
    """Run `wf` to its end in a temporary data directory; its result and events.

    `skip_time`: a `FakeClock` jumps over every wait for a timer (else the wall
    clock runs). `overrides` maps step ids to a `Fail(...)` or to the outputs
    the step returns instead of running. It returns when the run ends or waits
    only for a person (an approval, a signal without timeout); it raises
    TimeoutError after `RUN_LIMIT` real seconds.
    """
    engine_wf: Any = wf
    if overrides:
        if isinstance(wf, Workflow) and wf.inputs_type is not None:
            _check_struct_inputs(wf, inputs or {})  # the overridden spec has no Struct
        engine_wf = _overridden(wf, overrides)
    clock = FakeClock() if skip_time else None
    with tempfile.TemporaryDirectory(prefix="wfa-test-") as data_dir:
        config = EngineConfig(storage=StorageConfig(durability=Durability.RELAXED))
        with Engine(data_dir, config, clock=clock) as engine:
            if isinstance(wf, Workflow) and not isinstance(engine_wf, Workflow):
                engine.register(wf)
            where = os.path.dirname(os.fspath(wf)) if isinstance(wf, str | os.PathLike) else None
            handle = engine.submit(engine_wf, inputs, workflow_dir=where)
            skipping: Any = contextlib.nullcontext()
            if clock is not None:
                skipping = clock.skipping(lambda: engine.idle() and not _for_person(handle))
            with skipping:
                result = handle.wait(timeout=RUN_LIMIT)
            events = tuple(r.event for r in engine.history(handle.id))
    fields = {f: getattr(result, f) for f in result.__struct_fields__}
    return RunResult(**fields, events=events)


def _check_struct_inputs(wf: Workflow, inputs: Mapping[str, Any]) -> None:
    """What `Engine.submit(wf, inputs)` checks with the workflow's inputs Struct."""
    assert wf.inputs_type is not None
    given = {**input_defaults(wf.spec.inputs), **msgspec.to_builtins(dict(inputs))}
    problems = struct_problems(wf.inputs_type, given)
    if problems:
        raise ValidationError(problems, source=wf.name)


def _for_person(handle: RunHandle) -> bool:
    """Only a person can move the run on: no timer may be skipped to (say, a run's
    timeout while it waits for an approval)."""
    return handle.result().needs_intervention


def _overridden(
    wf: Workflow | WorkflowSpec | str | os.PathLike[str], overrides: Mapping[str, Any]
) -> WorkflowSpec:
    """The spec with each overridden step turned into a call of `overridden_step`."""
    if isinstance(wf, Workflow):
        spec = wf.spec
    elif isinstance(wf, WorkflowSpec):
        spec = wf
    else:
        from engine.input.loading import load_workflow

        spec = load_workflow(wf)
    known = {s.id for s in spec.steps}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise WorkflowAutomatorError(
            f"overrides name steps that {spec.name!r} does not have: {', '.join(unknown)}; "
            f"its steps are {', '.join(sorted(known))}"
        )
    steps = []
    for step in spec.steps:
        if step.id not in overrides:
            steps.append(step)
            continue
        override = overrides[step.id]
        if isinstance(override, Fail):
            kind = ErrorKind(override.kind)
            if kind not in _KINDS and kind is not ErrorKind.OUTPUT:
                raise WorkflowAutomatorError(
                    f"overrides[{step.id!r}]: Fail(kind={kind.value!r}) cannot be made by a step; "
                    "use user, network, resource or output"
                )
            plan: dict[str, Any] = {"fail": msgspec.to_builtins(override), "call": step.call}
        else:
            plan = {"outputs": msgspec.to_builtins(override)}
        steps.append(
            msgspec.structs.replace(
                step,
                run=None,
                call=_OVERRIDE,
                sleep=None,
                until=None,
                wait_for=None,
                params={"override": {**plan, "with": step.params}},
            )
        )
    return msgspec.structs.replace(spec, steps=tuple(steps))


def overridden_step(ctx: StepContext) -> Any:
    """The `call` of an overridden step: fail as told, or return the given outputs."""
    plan = ctx.params["override"]
    fail = plan.get("fail")
    if fail is not None and (fail["times"] is None or ctx.attempt <= fail["times"]):
        kind = ErrorKind(fail["kind"])
        if kind is ErrorKind.OUTPUT:
            return object()  # outputs that cannot be encoded: the engine's `output` kind
        raise _KINDS[kind](fail["message"])
    if fail is not None and plan["call"] is not None:
        from actors.execution.invoke import load_function

        own = load_function(plan["call"])
        return own(dataclasses.replace(ctx, params=plan["with"]))
    return plan.get("outputs", {})
