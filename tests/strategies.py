"""Hypothesis strategies and a tiny simulated runtime for the state machine tests.

`Sim` plays the runtime: it feeds triggers to `decide`, folds the events with
`evolve`, and checks on every step that a fold of the whole history from
scratch equals the live state. Time is a value it moves by hand.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import strategies as st

from engine.rules.decide import (
    AgentAssigned,
    AttemptFailedWith,
    AttemptSucceeded,
    Start,
    TimerFired,
    Trigger,
    decide,
)
from engine.rules.errors import ErrorKind
from engine.rules.events import Event, RunSettings, RunSubmitted
from engine.rules.policies.timeouts import TimerKind, active_timers
from engine.rules.spec import (
    ConcurrencySpec,
    RateLimitSpec,
    RetrySpec,
    StepSpec,
    TriggerRule,
    WaitForSpec,
    WorkflowSpec,
)
from engine.rules.state import RunState, StepStatus, evolve, fold

NOOP = "tests.steps:noop"


def step(step_id: str, **fields: Any) -> StepSpec:
    fields.setdefault("call", NOOP)
    return StepSpec(id=step_id, **fields)


def workflow(*steps: StepSpec, **fields: Any) -> WorkflowSpec:
    return WorkflowSpec(name=fields.pop("name", "wf"), steps=steps, **fields)


def encoded(state: RunState) -> bytes:
    return msgspec.msgpack.encode(state)


class Sim:
    """A deterministic stand-in for the actor runtime, driven one trigger at a time."""

    def __init__(
        self,
        spec: WorkflowSpec,
        *,
        settings: RunSettings | None = None,
        inputs: dict[str, Any] | None = None,
        reused: dict[str, Any] | None = None,
        run_id: str = "run-1",
        check_fold: bool = True,
    ) -> None:
        self.now = 0.0
        self.check_fold = check_fold
        submitted = RunSubmitted(
            at=self.now,
            run_id=run_id,
            spec=spec,
            inputs=inputs or {},
            settings=settings or RunSettings(),
            reused=reused or {},
        )
        self.events: list[Event] = [submitted]
        self.state = evolve(None, submitted)

    def do(self, trigger: Trigger, *, advance: float = 1.0) -> list[Event]:
        self.now += advance
        before = encoded(self.state)
        out = decide(self.state, trigger, self.now)
        assert encoded(self.state) == before, "decide mutated its input"
        for ev in out:
            self.state = evolve(self.state, ev)
        self.events.extend(out)
        if self.check_fold:
            assert encoded(fold(self.events)) == encoded(self.state)
        return out

    # conveniences ------------------------------------------------------------------

    def start(self) -> list[Event]:
        return self.do(Start())

    def assign(self, sid: str, agent: str = "agent-1") -> list[Event]:
        return self.do(AgentAssigned(step_id=sid, agent=agent))

    def succeed(self, sid: str, outputs: Any = None) -> list[Event]:
        if self.status(sid) is not StepStatus.RUNNING:
            self.assign(sid)
        return self.do(
            AttemptSucceeded(step_id=sid, attempt=self.state.steps[sid].attempts, outputs=outputs)
        )

    def fail(
        self, sid: str, kind: ErrorKind = ErrorKind.USER, message: str = "boom"
    ) -> list[Event]:
        if self.status(sid) is not StepStatus.RUNNING:
            self.assign(sid)
        attempt = self.state.steps[sid].attempts
        return self.do(AttemptFailedWith(step_id=sid, attempt=attempt, kind=kind, message=message))

    def fire(self, kind: TimerKind, sid: str | None = None) -> list[Event]:
        """Fire the armed timer of that kind (and step), moving the clock to its time."""
        for timer in active_timers(self.state):
            if timer.kind is kind and timer.step_id == sid:
                self.now = max(self.now, timer.at)
                return self.do(
                    TimerFired(kind=kind, step_id=sid, attempt=timer.attempt), advance=0.0
                )
        raise AssertionError(f"no {kind} timer armed for {sid}")

    def status(self, sid: str) -> StepStatus:
        return self.state.steps[sid].status

    def types(self, events: list[Event] | None = None) -> list[str]:
        return [type(e).__name__ for e in (self.events if events is None else events)]


# ---- random workflows ---------------------------------------------------------------------

ERROR_KINDS = list(ErrorKind)


@st.composite
def retry_specs(draw: st.DrawFn) -> RetrySpec | None:
    if draw(st.booleans()):
        return None
    return RetrySpec(
        max_attempts=draw(st.integers(1, 3)),
        initial_delay=draw(st.sampled_from([0.0, 0.5, 2.0])),
        backoff=2.0,
        max_delay=5.0,
        on=tuple(draw(st.sets(st.sampled_from(ERROR_KINDS), min_size=1))),
    )


@st.composite
def workflows(draw: st.DrawFn, max_steps: int = 50) -> WorkflowSpec:
    """Valid DAGs: edges only to earlier steps; random rules, flags, `when`, retries."""
    n = draw(st.integers(1, max_steps))
    steps: list[StepSpec] = []
    for i in range(n):
        sid = f"s{i}"
        after: tuple[str, ...] = ()
        if i:
            picks = draw(st.sets(st.integers(0, i - 1), max_size=min(3, i)))
            after = tuple(f"s{j}" for j in sorted(picks))
        when = None
        if after and draw(st.integers(0, 5)) == 0:
            dep = after[0]
            when = f'has(steps.{dep}.outputs.ok) && steps.{dep}.outputs.ok == "yes"'
        steps.append(
            StepSpec(
                id=sid,
                call=NOOP,
                after=after,
                trigger=draw(st.sampled_from(list(TriggerRule))),
                critical=draw(st.booleans()),
                when=when,
                retry=draw(retry_specs()),
                fallback=draw(st.sampled_from([(), ("fb-1",), ("fb-1", "fb-2")])),
                timeout=draw(st.sampled_from([None, 5.0])),
            )
        )
    return WorkflowSpec(name="random", steps=tuple(steps))


settings_strategy = st.builds(
    RunSettings,
    default_timeout=st.just(10.0),
    default_retry_count=st.integers(0, 2),
    enable_parallel_execution=st.booleans(),
    max_interrupted_attempts=st.integers(1, 3),
)


SIGNAL_NAMES = ["paid", "shipped"]


@st.composite
def waiting_step(draw: st.DrawFn, spec: StepSpec) -> StepSpec:
    """`spec` (sometimes) turned into a durable wait: a sleep or a signal, with no body."""
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return msgspec.structs.replace(spec, call=None, sleep=draw(st.sampled_from([0.0, 2.0])))
    if choice == 2:  # a child workflow; `with_children` stores it with the spec
        return msgspec.structs.replace(spec, call=None, workflow=CHILD_REF)
    if choice == 1:
        wait = WaitForSpec(
            signal=draw(st.sampled_from(SIGNAL_NAMES)),
            timeout=draw(st.sampled_from([None, 5.0])),
        )
        return msgspec.structs.replace(spec, call=None, wait_for=wait)
    return spec


@st.composite
def waiting_workflows(draw: st.DrawFn, max_steps: int = 50) -> WorkflowSpec:
    """`workflows`, where some steps sleep, wait for a signal or run a child workflow."""
    spec = draw(workflows(max_steps=max_steps))
    steps = tuple(draw(waiting_step(s)) for s in spec.steps)
    return with_children(msgspec.structs.replace(spec, steps=steps))


CHILD_REF = "child.yaml"
CHILD_SPEC = WorkflowSpec(
    name="child",
    steps=(StepSpec(id="c", call=NOOP),),
    outputs={"ok": '"yes"'},
)
CHILD_ENDS = ["succeeded", "succeeded", "failed", "timed_out", "cancelled"]
"""How a child run may end, as its parent's `ChildEnded` reports it."""


def with_children(spec: WorkflowSpec) -> WorkflowSpec:
    """`spec` holding the child workflow its `workflow:` steps run, as loading stores it."""
    return msgspec.structs.replace(spec, workflows={CHILD_REF: CHILD_SPEC})


# ---- concurrency keys and rate limits ----------------------------------------

RATE_LIMIT_REASON = "rate limit of random.{sid}: at most 2 starts per 1s"
"""What the pool tells a run whose step has no token (a `ResourcesRefused` reason)."""

rate_limit_specs = st.builds(RateLimitSpec, max=st.integers(1, 5), per=st.sampled_from([0.5, 60.0]))


@st.composite
def limited_step(draw: st.DrawFn, spec: StepSpec) -> StepSpec:
    """`spec`, sometimes under a rate limit."""
    if draw(st.integers(0, 3)) == 0:
        return msgspec.structs.replace(spec, rate_limit=draw(rate_limit_specs))
    return spec


@st.composite
def limited_workflows(draw: st.DrawFn, spec: WorkflowSpec) -> WorkflowSpec:
    """`spec`, sometimes with a concurrency key (from an input) and rate-limited steps."""
    steps = tuple(draw(limited_step(s)) for s in spec.steps)
    if draw(st.booleans()):
        key = ConcurrencySpec(key="${{ inputs.customer }}", limit=draw(st.integers(1, 3)))
        return msgspec.structs.replace(
            spec, steps=steps, concurrency=key, inputs={**spec.inputs, "customer": "acme"}
        )
    return msgspec.structs.replace(spec, steps=steps)
