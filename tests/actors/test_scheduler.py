"""The scheduler through a real Engine: at most `max_concurrent_workflows` runs at once,
and queued runs are admitted by priority (highest first, then in submission order)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine import Engine
from engine.rules import events as ev
from tests.actors.test_runtime import config, py, workflow
from tests.support import until

ENDED = (ev.RunSucceeded, ev.RunFailed, ev.RunCancelled, ev.RunTimedOut)


def held_until(gate: Path) -> Any:
    """A one-step workflow whose step runs until `gate` exists."""
    wait = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    return workflow({"id": "wait", "run": py(wait)})


def most_at_once(engine: Engine) -> int:
    """The most runs that were started and not ended at any point of the log."""
    running: set[str] = set()
    most = 0
    for rec in engine.store.read_all():
        if isinstance(rec.event, ev.RunStarted):
            running.add(rec.stream)
            most = max(most, len(running))
        elif isinstance(rec.event, ENDED):
            running.discard(rec.stream)
    return most


def start_order(engine: Engine) -> list[str]:
    return [
        rec.stream.removeprefix(ev.RUN_STREAM_PREFIX)
        for rec in engine.store.read_all()
        if isinstance(rec.event, ev.RunStarted)
    ]


def test_queued_runs_start_one_at_a_time_highest_priority_first(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with Engine(data_dir=tmp_path / "wfa", config=config(max_concurrent_workflows=1)) as eng:
        blocker = eng.submit(held_until(gate))
        until(lambda: blocker.result().status == "running")
        quick = workflow({"id": "s", "run": ["true"]})
        queued = [(p, eng.submit(quick, priority=p)) for p in (0, 5, 1, 5, 3)]
        assert {h.result().status for _, h in queued} == {"queued"}
        gate.touch()
        for handle in [blocker, *(h for _, h in queued)]:
            assert handle.wait(timeout=60).status == "succeeded"
        order = start_order(eng)
        assert most_at_once(eng) == 1
    by_priority = [h.id for _, h in sorted(queued, key=lambda item: -item[0])]  # stable: ties
    assert order == [blocker.id, *by_priority]  # in submission order


def test_no_more_than_max_concurrent_workflows_run_at_once(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    with Engine(data_dir=tmp_path / "wfa", config=config(max_concurrent_workflows=2)) as eng:
        handles = [eng.submit(held_until(gate)) for _ in range(5)]
        until(lambda: sum(h.result().status == "running" for h in handles) == 2)
        assert sum(h.result().status == "queued" for h in handles) == 3
        gate.touch()
        for handle in handles:
            assert handle.wait(timeout=60).status == "succeeded"
        assert most_at_once(eng) == 2
