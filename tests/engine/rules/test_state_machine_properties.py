"""Properties of random runs: random DAGs of up to 50 steps, driven by a simulated
runtime with random outcomes, timer firings and operator answers."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.rules.decide import (
    AgentAssigned,
    Approve,
    AttemptFailedWith,
    AttemptSucceeded,
    ChildEnded,
    GiveUp,
    Recover,
    ResourcesRefused,
    Resume,
    RetryStep,
    Signal,
    SkipStep,
    TimerFired,
    Trigger,
)
from engine.rules.errors import ErrorKind
from engine.rules.events import (
    AttemptInterrupted,
    AttemptStarted,
    Event,
    RunSettings,
    decode_event,
    encode_event,
)
from engine.rules.policies.timeouts import active_timers
from engine.rules.spec import OnFailure, TriggerRule, WorkflowSpec
from engine.rules.state import (
    TERMINAL_RUN,
    TERMINAL_STEP,
    RunState,
    RunStatus,
    StepStatus,
    WaitReason,
    fold,
    index_of,
    paused_as_a_whole,
    spec_of,
)
from tests.strategies import (
    CHILD_ENDS,
    ERROR_KINDS,
    RATE_LIMIT_REASON,
    SIGNAL_NAMES,
    Sim,
    encoded,
    limited_workflows,
    settings_strategy,
    waiting_step,
    waiting_workflows,
    with_children,
    workflows,
)

OUTPUTS = [{"ok": "yes"}, {"ok": "no"}, {}]


@st.composite
def gated_workflows(draw: st.DrawFn) -> WorkflowSpec:
    """Random workflows where some steps pause on failure, need approval, fan out,
    sleep or wait for a signal."""
    spec = draw(workflows(max_steps=draw(st.sampled_from([5, 12, 50]))))
    steps = []
    for s in spec.steps:
        pause = draw(st.integers(0, 7)) == 0
        approval = draw(st.integers(0, 9)) == 0
        foreach = draw(st.sampled_from([None] * 6 + ["[]", "[1, 2, 3]"]))
        steps.append(
            msgspec.structs.replace(
                draw(waiting_step(s)),
                on_failure=OnFailure.PAUSE if pause else OnFailure.FAIL,
                approval=approval,
                foreach=foreach,
            )
        )
    timeout = draw(st.sampled_from([None, None, None, 20.0]))
    spec = msgspec.structs.replace(spec, steps=tuple(steps), timeout=timeout)
    return with_children(draw(limited_workflows(spec)))


def _options(sim: Sim, retried: set[str]) -> list[Trigger]:
    """Everything a runtime or an operator could do next, in a stable order."""
    state = sim.state
    found: list[Trigger] = []
    for sid, s in state.steps.items():
        if s.waiting in (WaitReason.AGENT, WaitReason.RESOURCES):
            found.append(AgentAssigned(step_id=sid, agent=s.preferred_agent or "agent-1"))
            found.append(AgentAssigned(step_id=sid, agent="agent-2", unavailable="breaker open"))
            found.append(ResourcesRefused(step_id=sid, reason=f"cpu {len(found) % 2}"))
            if spec_of(state, sid).rate_limit is not None:
                reason = RATE_LIMIT_REASON.format(sid=spec_of(state, sid).id)
                found.append(ResourcesRefused(step_id=sid, reason=reason))
        elif s.status is StepStatus.RUNNING and s.waiting is None:
            for outputs in OUTPUTS + OUTPUTS[:2]:  # success is more likely than not
                found.append(AttemptSucceeded(step_id=sid, attempt=s.attempts, outputs=outputs))
            for kind in ERROR_KINDS[:4]:
                found.append(
                    AttemptFailedWith(step_id=sid, attempt=s.attempts, kind=kind, message="x")
                )
        elif s.waiting is WaitReason.APPROVAL:
            found += [Approve(step_id=sid), SkipStep(step_id=sid)]
        elif s.waiting in (WaitReason.SLEEP, WaitReason.SIGNAL):
            found.append(SkipStep(step_id=sid))
        elif s.waiting is WaitReason.CHILD and s.child_run_id is not None:
            for status, outputs in zip(CHILD_ENDS, OUTPUTS + OUTPUTS, strict=False):
                found.append(
                    ChildEnded(step_id=sid, run_id=s.child_run_id, status=status, outputs=outputs)
                )
            found.append(ChildEnded(step_id=sid, run_id="stale", status="succeeded"))
            found.append(SkipStep(step_id=sid))
        elif s.waiting is WaitReason.PAUSED:
            found += [SkipStep(step_id=sid, outputs={"ok": "yes"}), SkipStep(step_id=sid)]
            if sid not in retried:
                found.append(RetryStep(step_id=sid))
    if state.status is RunStatus.PAUSED:
        found.append(Resume())
    if state.status is RunStatus.RUNNING:
        found.append(GiveUp(reason="the actor crashed"))
    if any(s.wait_for is not None for s in state.spec.steps):  # before or while a step waits
        found += [Signal(name=name, data={"ok": "yes"}) for name in SIGNAL_NAMES]
    for t in active_timers(state):
        found.append(TimerFired(kind=t.kind, step_id=t.step_id, attempt=t.attempt))
    return found


def _check_starts_after_dependencies(state: RunState, events: list[Event]) -> None:
    index = index_of(state)
    for ev in events:
        if isinstance(ev, AttemptStarted):
            top = state.steps[ev.step_id].parent or ev.step_id
            for dep in index.deps[top]:
                assert state.steps[dep].status in TERMINAL_STEP, (ev.step_id, dep)


def _check_interruptions(sim: Sim, running: list[str], out: list[Event]) -> None:
    """Every interrupted attempt is recorded; a step runs again unless it hit the limit."""
    limit = sim.state.settings.max_interrupted_attempts
    assert [e.step_id for e in out if isinstance(e, AttemptInterrupted)] == running
    for sid in running:
        s = sim.state.steps[sid]
        assert s.engine_crashes <= limit
        if s.engine_crashes == limit or (s.error and "engine crash" in s.error.message):
            assert s.status is StepStatus.FAILED or s.waiting is WaitReason.PAUSED, sid
            assert s.error is not None and s.error.kind is ErrorKind.AGENT
        elif sim.state.status not in TERMINAL_RUN:
            assert s.waiting in (WaitReason.AGENT, None), (sid, s.waiting)


def _check_serial(state: RunState) -> None:
    if state.settings.enable_parallel_execution:
        return
    holders = [
        sid
        for sid, s in state.steps.items()
        if s.waiting in (WaitReason.AGENT, WaitReason.RESOURCES, WaitReason.RETRY, WaitReason.CHILD)
        or (s.status is StepStatus.RUNNING and s.waiting is None)
    ]
    assert len(holders) <= 1, holders


def _check_named_waits(state: RunState) -> None:
    """A step held by a rate limit says which; a queued run with a key names it; a run
    the engine gave up on waits for a person only."""
    if paused_as_a_whole(state):
        assert [str(w) for w in state.waiting_for()] == ["intervention"]
        return
    named = {w.step_id: w.reason for w in state.waiting_for()}
    for sid, st_ in state.steps.items():
        if st_.waiting is WaitReason.RESOURCES and (st_.reason or "").startswith("rate limit"):
            assert named[sid] == f"rate limit of random.{spec_of(state, sid).id}"
    if state.status is RunStatus.QUEUED and state.spec.concurrency is not None:
        assert named[None] == "concurrency key customer=acme"


def _drive(sim: Sim, data: st.DataObject, fold_every: int) -> None:
    retried: set[str] = set()
    for turn in range(3000):
        state = sim.state
        if state.status in TERMINAL_RUN:
            break
        assert state.waiting_for(), "a live run must say what it waits for"
        _check_named_waits(state)
        options = _options(sim, retried)
        assert options, f"stuck: {state.waiting_for()}"
        trigger = options[data.draw(st.integers(0, len(options) - 1), label="choice")]
        if isinstance(trigger, RetryStep):
            retried.add(trigger.step_id)
        before = encoded(sim.state)
        out = sim.do(trigger, advance=data.draw(st.sampled_from([0.0, 0.5, 3.0]), label="dt"))
        assert encoded(sim.state) != before or out == []
        _check_starts_after_dependencies(sim.state, out)
        _check_serial(sim.state)
        if turn % fold_every == 0:
            replayed = fold(decode_event(encode_event(e)) for e in sim.events)
            assert encoded(replayed) == encoded(sim.state)
    assert sim.state.status in TERMINAL_RUN
    assert encoded(fold(sim.events)) == encoded(sim.state)


def _reference_check(sim: Sim) -> None:
    """Skips and trigger rules, re-derived by the simplest possible reading of the rules."""
    state = sim.state
    if state.status in (RunStatus.CANCELLED, RunStatus.TIMED_OUT):
        return
    outcome: dict[str, str] = {}
    for spec in state.spec.steps:
        s = state.steps[spec.id]
        if s.reason == "skipped manually" or (s.error and s.error.message.startswith("when:")):
            outcome[spec.id] = "succeeded" if s.stood_in else s.status.value
            continue
        deps = [outcome[d] for d in spec.after]
        rule = spec.trigger
        if rule == TriggerRule.ALL_SUCCESS:
            run = all(d == "succeeded" for d in deps)
        elif rule == TriggerRule.ALL_DONE:
            run = True
        elif rule == TriggerRule.ANY_SUCCESS:
            run = not deps or any(d == "succeeded" for d in deps)
        else:
            run = not any(d == "failed" for d in deps)
        if run and spec.when is not None:
            outputs: Any = state.steps[spec.after[0]].outputs
            run = isinstance(outputs, dict) and outputs.get("ok") == "yes"
        if not run:
            assert s.status is StepStatus.SKIPPED, (spec.id, s.status, deps)
            outcome[spec.id] = "skipped"
        else:
            assert s.status in (StepStatus.SUCCEEDED, StepStatus.FAILED), (spec.id, s.status)
            outcome[spec.id] = s.status.value
    critical_failed = any(outcome[s.id] == "failed" and s.critical for s in state.spec.steps)
    assert state.status is (RunStatus.FAILED if critical_failed else RunStatus.SUCCEEDED)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=gated_workflows(), run_settings=settings_strategy, data=st.data())
def test_random_runs_end_terminal_start_after_dependencies_and_replay_exactly(
    spec: WorkflowSpec, run_settings: RunSettings, data: st.DataObject
) -> None:
    sim = Sim(spec, settings=run_settings, check_fold=False)
    _check_named_waits(sim.state)
    sim.start()
    _drive(sim, data, fold_every=1 if len(spec.steps) <= 12 else 25)
    _reference_check(sim)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=waiting_workflows(max_steps=15).flatmap(limited_workflows),
    run_settings=settings_strategy,
    data=st.data(),
)
def test_a_crash_at_any_point_recovers_from_the_log_to_the_same_end(
    spec: WorkflowSpec, run_settings: RunSettings, data: st.DataObject
) -> None:
    """Recover after a fold of the log at random moments never breaks the run's rules."""
    sim = Sim(spec, settings=run_settings, check_fold=False)
    sim.start()
    for _ in range(data.draw(st.integers(0, 4), label="crashes")):
        steps = data.draw(st.integers(0, 30), label="until crash")
        for _ in range(steps):
            if sim.state.status in TERMINAL_RUN:
                break
            options = _options(sim, set())
            sim.do(options[data.draw(st.integers(0, len(options) - 1))])
        sim.state = fold(sim.events)
        running = [k for k, s in sim.state.steps.items() if s.status is StepStatus.RUNNING]
        crashed = data.draw(st.booleans(), label="crashed")
        in_engine = frozenset(k for k in running if data.draw(st.booleans(), label="in engine"))
        out = sim.do(Recover(crashed=crashed, in_engine=in_engine))
        _check_interruptions(sim, running, out)
        assert sim.do(Recover(crashed=crashed, in_engine=in_engine)) == []  # idempotent
    _drive(sim, data, fold_every=10)
    _reference_check(sim)
