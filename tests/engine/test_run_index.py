"""The run index answers what a fold of the whole log answers: after random runs,
commands, appends by code without the index, reopens, rebuilds and prunes."""

from __future__ import annotations

import pathlib
from typing import Any

import hypothesis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.retention import prune
from engine.rules.events import (
    COMMANDS_STREAM,
    RUN_STREAM_PREFIX,
    AgentRegistered,
    CommandIssued,
    Event,
    RunCancelled,
    RunFailed,
    RunPaused,
    RunResumed,
    RunStarted,
    RunSubmitted,
    RunSucceeded,
    RunTimedOut,
    run_stream,
)
from engine.rules.state import RUN_TRANSITIONS, TERMINAL_RUN, RunStatus, fold
from engine.run_index import (
    RunIndexer,
    RunSummary,
    command_positions,
    incomplete_runs,
    list_runs,
    pruned_into,
    rebuild_index,
    summarize,
)
from eventstore import EventStore
from tests.strategies import step, workflow

WORKFLOWS = ("alpha", "beta", "gamma")
NEXT_EVENT: dict[RunStatus, Any] = {
    RunStatus.RUNNING: lambda at: RunStarted(at=at),
    RunStatus.PAUSED: lambda at: RunPaused(at=at, reason="a step paused"),
    RunStatus.SUCCEEDED: lambda at: RunSucceeded(at=at),
    RunStatus.FAILED: lambda at: RunFailed(at=at, reason="step x failed"),
    RunStatus.CANCELLED: lambda at: RunCancelled(at=at),
    RunStatus.TIMED_OUT: lambda at: RunTimedOut(at=at),
}


def submitted(run_id: str, name: str, at: float, priority: int = 0) -> RunSubmitted:
    return RunSubmitted(
        at=at, run_id=run_id, spec=workflow(step("a"), name=name, priority=priority)
    )


def next_event(status: RunStatus, choice: int, at: float) -> Event | None:
    """A run-level event `decide` could produce from `status`, or None when ended;
    small choices keep the run going (start, pause, resume), larger ones end it."""
    options = sorted(RUN_TRANSITIONS[status], key=lambda s: (s in TERMINAL_RUN, s.value))
    if not options:
        return None
    target = options[choice % len(options)]
    if status is RunStatus.PAUSED and target is RunStatus.RUNNING:
        return RunResumed(at=at)
    event: Event = NEXT_EVENT[target](at)
    return event


def folded(store: EventStore[Event]) -> list[RunSummary]:
    """Every run's summary from a fold of its whole stream, newest first."""
    found = []
    for info in store.streams(RUN_STREAM_PREFIX):
        state = fold(r.event for r in store.read_stream(info.name))
        found.append(
            RunSummary(
                run_id=state.run_id,
                workflow=state.spec.name,
                status=state.status,
                priority=state.spec.priority,
                submitted_at=state.submitted_at,
                started_at=state.started_at,
                ended_at=state.ended_at,
                reason=state.reason,
            )
        )
    return sorted(found, key=lambda r: (r.submitted_at, r.run_id), reverse=True)


def assert_index_equals_fold(store: EventStore[Event]) -> None:
    truth = folded(store)
    for status in [None, *(s.value for s in RunStatus)]:
        for name in [None, *WORKFLOWS]:
            expected = [
                r
                for r in truth
                if (status is None or r.status == status) and (name is None or r.workflow == name)
            ]
            assert list_runs(store, status=status, workflow=name) == expected, (status, name)
    # pages of 2, each continuing from the previous one's last run, walk the same list
    paged: list[RunSummary] = []
    while True:
        page = list_runs(store, limit=2, before=paged[-1].run_id if paged else None)
        paged += page
        if len(page) < 2:
            break
    assert paged == truth
    if truth:
        middle = truth[len(truth) // 2].submitted_at
        assert list_runs(store, since=middle) == [r for r in truth if r.submitted_at >= middle]
        assert list_runs(store, before=middle) == [r for r in truth if r.submitted_at < middle]
    assert incomplete_runs(store) == sorted(
        (r for r in truth if r.status not in TERMINAL_RUN),
        key=lambda r: (r.submitted_at, r.run_id),
    )
    commands: dict[str, list[int]] = {}
    for rec in store.read_stream(COMMANDS_STREAM):
        commands.setdefault(rec.event.run_id, []).append(rec.position)
    for r in truth:
        assert command_positions(store, r.run_id) == commands.get(r.run_id, [])
        positions = commands.get(r.run_id, [])
        if positions:
            assert command_positions(store, r.run_id, after=positions[0]) == positions[1:]
    assert store.index_position() == store.last_position()


PICKS = st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4])  # mostly keep runs going
actions = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.sampled_from(WORKFLOWS), st.integers(0, 3)),
        *[st.tuples(st.just("advance"), st.integers(0, 3), st.lists(PICKS, min_size=1, max_size=4))]
        * 3,
        # runs that end at once and paths that mostly end a run: something to prune
        *[st.tuples(st.just("submit_ended"), st.sampled_from(WORKFLOWS), st.integers(1, 4))] * 2,
        st.tuples(st.just("advance"), st.integers(0, 20), st.lists(st.integers(1, 4), min_size=2)),
        st.tuples(st.just("command"), st.integers(0, 20), st.just(0)),
        st.tuples(st.just("noise"), st.just(""), st.just(0)),
        st.tuples(st.just("without_index"), st.integers(0, 20), st.lists(PICKS)),
        st.tuples(st.just("reopen"), st.just(""), st.just(0)),
        st.tuples(st.just("rebuild"), st.just(""), st.just(0)),
        st.tuples(st.just("prune"), st.integers(0, 20), st.integers(1, 3)),
    ),
    min_size=8,
    max_size=40,
)


def open_indexed(path: pathlib.Path) -> EventStore[Event]:
    return EventStore.open(path, Event, durability="relaxed", indexer=RunIndexer())


@settings(max_examples=100, deadline=None)
@given(actions)
def test_the_run_index_equals_a_fold_of_the_whole_log(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, Any, Any]]
) -> None:
    """After every step, listing by status, workflow, time and cursor, the incomplete
    runs and each run's commands equal what folding every run's stream gives."""
    data = tmp_path_factory.mktemp("runs")
    path = data / "events"
    store = open_indexed(path)
    runs: list[str] = []
    pruned: dict[str, str] = {}  # run id -> the archive it went into
    clock = 1_800_000_000.0
    try:
        for action, arg, choice in steps:
            clock += 0.5 if len(runs) % 2 else 0.0  # equal submission times happen too
            if action in ("submit", "submit_ended"):
                run_id = f"r{len(runs):03d}"
                runs.append(run_id)
                first = submitted(run_id, arg, clock, 0 if action == "submit_ended" else choice)
                ending = [RunStarted(at=clock), NEXT_EVENT[sorted(TERMINAL_RUN)[choice - 1]](clock)]
                store.append(run_stream(run_id), [first, *ending[: 2 * (action != "submit")]], 0)
            elif action in ("advance", "without_index") and len(runs) > len(pruned):
                run_id = [r for r in runs if r not in pruned][arg % (len(runs) - len(pruned))]
                state = fold(r.event for r in store.read_stream(run_stream(run_id)))
                events = []  # a path of run transitions, appended in one batch
                for pick in choice:
                    event = next_event(state.status, pick, clock)
                    if event is None:
                        break
                    state = fold([event], state)
                    events.append(event)
                if action == "advance":
                    store.append(run_stream(run_id), events)
                else:  # older code appends: the log only
                    store.close()
                    with EventStore.open(path, Event, durability="relaxed") as plain:
                        plain.append(run_stream(run_id), events)
                    store = open_indexed(path)
            elif action == "command" and runs:
                command = CommandIssued(at=clock, run_id=runs[arg % len(runs)], command="cancel")
                store.append(COMMANDS_STREAM, [command])
            elif action == "noise":
                store.append("agents", [AgentRegistered(at=clock, name="a1")])
            elif action == "reopen":
                store.close()
                store = open_indexed(path)
            elif action == "rebuild":
                assert rebuild_index(store) == len(runs) - len(pruned)
            elif action == "prune":  # some ended runs, from the index's own candidates
                ended = [r.run_id for r in list_runs(store) if r.status in TERMINAL_RUN]
                chosen = ended[arg % max(len(ended), 1) :][:choice]
                archive = data / f"archive-{arg % 2}.jsonl.gz"
                report = prune(store, data, chosen, archive)
                assert report.runs == len(chosen)
                pruned.update((r, str(archive)) for r in chosen)
                hypothesis.event(f"pruned {len(chosen)} run(s)")
            assert_index_equals_fold(store)
            assert {r: pruned_into(store, r) for r in runs} == {r: pruned.get(r) for r in runs}
    finally:
        store.close()


def test_summarize_ignores_events_before_submission_and_step_events() -> None:
    """Only run lifecycle events move a summary; nothing exists before RunSubmitted."""
    assert summarize(None, RunStarted(at=1.0)) is None
    row = summarize(None, submitted("r", "alpha", 5.0, priority=3))
    assert row is not None and (row.status, row.priority) == (RunStatus.QUEUED, 3)
    assert summarize(row, AgentRegistered(at=6.0, name="a")) is row
    ended = summarize(summarize(row, RunStarted(at=6.0)), RunFailed(at=7.0, reason="boom"))
    assert ended is not None
    assert (ended.status, ended.started_at, ended.ended_at, ended.reason) == (
        RunStatus.FAILED,
        6.0,
        7.0,
        "boom",
    )
