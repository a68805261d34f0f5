"""Concurrency keys and rate limits through real `wfa` processes and the Python API,
including a SIGKILL of the engine: both hold across the restart, counted from the log."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from engine import Engine
from engine.rules.events import (
    AttemptStarted,
    RateLimitTokenTaken,
    RunStarted,
    RunSucceeded,
    StepWaitingForResources,
)
from tests.e2e.test_cli_waits import cli, has_event, start_wfa
from tests.support import until

PER_CUSTOMER = """
name: per-customer
inputs: {customer: acme, go: ""}
concurrency: {key: "${{ inputs.customer }}", limit: 1}
steps:
  - id: work
    run:
      - python3
      - -c
      - |
        import os, sys, time
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.05)
      - ${{ inputs.go }}
"""

RATED = """
name: rated
steps:
  - id: api
    run: ["python3", "-c", "pass"]
    rate_limit: {max: 1, per: 4}
"""


def records(data: Path, run_id: str) -> list[Any]:
    with Engine(data_dir=data, drive=False) as eng:
        return list(eng.history(run_id))


def position(data: Path, run_id: str, kind: type) -> int:
    return next(r.position for r in records(data, run_id) if isinstance(r.event, kind))


def waiting_for(data: Path, run_id: str) -> list[str]:
    shown = cli(data, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    result: list[str] = json.loads(shown.stdout)["waiting_for"]
    return result


def test_a_concurrency_limit_holds_across_a_sigkill_counted_from_the_log(tmp_path: Path) -> None:
    data, flow, go = tmp_path / "data", tmp_path / "per-customer.yaml", tmp_path / "go"
    flow.write_text(PER_CUSTOMER)
    engine = start_wfa(data, "run", flow, "--id", "a", "-i", f"go={go}")
    until(lambda: has_event(data, "a", AttemptStarted))
    with Engine(data_dir=data, drive=False) as client:  # submits through the log
        client.submit(flow, {"customer": "acme", "go": str(go)}, run_id="b")
        client.submit(flow, {"customer": "other", "go": str(go)}, run_id="c")
    until(lambda: has_event(data, "c", AttemptStarted))  # another key is not held up
    assert not has_event(data, "b", RunStarted)
    assert waiting_for(data, "b") == ["concurrency key customer=acme"]
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=20)
    with Engine(data_dir=data) as eng:  # recovers a, b and c from the log
        until(
            lambda: len([r for r in eng.history("a") if isinstance(r.event, AttemptStarted)]) == 2
        )
        assert not any(isinstance(r.event, RunStarted) for r in eng.history("b"))
        assert [str(w) for w in eng.state("b").waiting_for()] == ["concurrency key customer=acme"]
        go.touch()
        for run_id in ("a", "b", "c"):
            assert eng.handle(run_id).wait(timeout=60).status == "succeeded"
    assert position(data, "b", RunStarted) > position(data, "a", RunSucceeded)


def test_a_rate_limit_holds_across_a_sigkill_and_shows_in_waiting_for(tmp_path: Path) -> None:
    data, flow = tmp_path / "data", tmp_path / "rated.yaml"
    flow.write_text(RATED)
    first = cli(data, "run", flow, "--id", "r1", "--json")
    assert first.returncode == 0, first.stderr
    engine = start_wfa(data, "run", flow, "--id", "r2")  # a new engine: the bucket is in the log
    until(lambda: has_event(data, "r2", StepWaitingForResources))
    assert waiting_for(data, "r2") == ["rate limit of rated.api of api"]
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=20)
    resumed = cli(data, "resume", "r2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    (one,) = [r.event for r in records(data, "r1") if isinstance(r.event, AttemptStarted)]
    (two,) = [r.event for r in records(data, "r2") if isinstance(r.event, AttemptStarted)]
    assert two.at >= one.at + 4  # at most 1 start in any 4 s, though two engines ran them
    with Engine(data_dir=data, drive=False) as eng:
        takes = [r.event for r in eng.store.read_stream("rate-limits")]
    assert [(t.name, t.run_id) for t in takes if isinstance(t, RateLimitTokenTaken)] == [
        ("rated.api", "r1"),
        ("rated.api", "r2"),
    ]


def test_python_api_runs_of_one_key_run_one_at_a_time_in_submission_order(tmp_path: Path) -> None:
    flow = tmp_path / "per-customer.yaml"
    flow.write_text(PER_CUSTOMER.replace("limit: 1", "limit: 2"))
    go = tmp_path / "go"
    go.touch()
    with Engine(data_dir=tmp_path / "data") as eng:
        runs = [eng.submit(flow, {"customer": "acme", "go": str(go)}) for _ in range(5)]
        for run in runs:
            assert run.wait(timeout=60).status == "succeeded"
        spans = []
        for run in runs:
            history = [r.event for r in eng.history(run.id)]
            start = next(e.at for e in history if isinstance(e, RunStarted))
            end = next(e.at for e in history if isinstance(e, RunSucceeded))
            spans.append((start, end))
    for start, _ in spans:  # at no run's start were more than 2 runs running
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    assert [s for s, _ in spans] == sorted(s for s, _ in spans)


def test_python_api_a_capability_rate_limit_spans_steps_and_runs(tmp_path: Path) -> None:
    config = load_config_text(
        tmp_path,
        "agents: [{name: caller, capabilities: [api], capacity: 4}]\n"
        "rate_limits: {api: {max: 2, per: 3}}\n",
    )
    flow = tmp_path / "calls.yaml"
    flow.write_text(
        "name: calls\nsteps:\n"
        '  - {id: one, agent: api, run: ["python3", "-c", "pass"]}\n'
        '  - {id: two, agent: api, run: ["python3", "-c", "pass"]}\n'
    )
    with Engine(data_dir=tmp_path / "data", config=config) as eng:
        runs = [eng.submit(flow) for _ in range(2)]
        for run in runs:
            assert run.wait(timeout=60).status == "succeeded"
        starts = sorted(
            r.event.at
            for run in runs
            for r in eng.history(run.id)
            if isinstance(r.event, AttemptStarted)
        )
        held = [
            r.event.reason
            for run in runs
            for r in eng.history(run.id)
            if isinstance(r.event, StepWaitingForResources)
        ]
    assert len(starts) == 4
    assert starts[2] >= starts[0] + 3 and starts[3] >= starts[1] + 3  # 2 in any 3 s
    assert held and all(reason.startswith("rate limit of api:") for reason in held)


def load_config_text(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wfa.yaml"
    path.write_text(text)
    return path


def test_cancelling_a_run_queued_behind_its_key_ends_it_without_waiting_for_the_key(
    tmp_path: Path,
) -> None:
    flow, go = tmp_path / "per-customer.yaml", tmp_path / "go"
    flow.write_text(PER_CUSTOMER)
    with Engine(data_dir=tmp_path / "data") as eng:
        first = eng.submit(flow, {"customer": "acme", "go": str(go)})
        until(lambda: any(isinstance(r.event, AttemptStarted) for r in eng.history(first.id)))
        second = eng.submit(flow, {"customer": "acme", "go": str(go)})
        eng.cancel(second.id)
        assert second.wait(timeout=30).status == "cancelled"
        assert not any(isinstance(r.event, RunStarted) for r in eng.history(second.id))
        assert eng.state(first.id).status.value == "running"  # still holds its key
        go.touch()
        assert first.wait(timeout=60).status == "succeeded"
