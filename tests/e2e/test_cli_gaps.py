"""Readers are right with gaps: runs written interleaved, one of them pruned, leave gaps
inside the kept run's span of positions; export, replay, show, stats and traces of the
kept run answer as before the prune, and as a log that never held the pruned run."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from benchmarks.scale_bench import ended_run, flow
from engine import Engine
from engine.facade import UnknownRunError
from engine.input.datadir import EVENTS
from engine.retention import prune
from engine.rules.events import Event, run_stream
from engine.run_index import RunIndexer
from eventstore import EventStore
from tests.e2e.test_cli_runs import as_json, cli
from tests.strategies import step, workflow

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z, all runs ended a minute later
AFTER = "2023-11-16T00:00:00Z"
NOOP = "tests.actors.runtime_flows:noop"
KEPT, PRUNED = ["kept-1", "kept-2"], ["gone-1", "gone-2"]


def write(data: Path, run_ids: list[str]) -> None:
    """The runs' events appended one at a time, round robin: interleaved positions."""
    rng = random.Random(5)
    runs = {
        r: ended_run(r, flow(f"flow-{r[:4]}"), T0 + i, rng) for i, r in enumerate(KEPT + PRUNED)
    }
    pending = {r: list(runs[r]) for r in run_ids}
    with EventStore.open(data / EVENTS, Event, indexer=RunIndexer()) as store:
        while any(pending.values()):
            for run_id, events in pending.items():
                if events:
                    store.append(run_stream(run_id), [events.pop(0)])


def answers(data: Path) -> dict[str, Any]:
    found: dict[str, Any] = {"stats": as_json(cli(data, "stats", "--json"))}
    found["window"] = as_json(cli(data, "stats", "--since", "2023-11-14T22:13:21Z", "--json"))
    for run_id in KEPT:
        found[run_id] = [
            as_json(cli(data, command, run_id, "--json"))
            for command in ("replay", "show", "traces")
        ]
        history = cli(data, "history", run_id, "--json").stdout.splitlines()
        found[run_id].append([json.loads(line) for line in history])
        found[run_id].append(
            json.loads(cli(data, "traces", run_id, "--format", "jaeger-json").stdout)
        )
    return found


VOLATILE = {
    "recorded_at",
    "seq",
    "to",
    "seconds",
    "utilisation",
    "runs_per_minute",
    "steps_per_minute",
}


def drop_volatile(found: dict[str, Any]) -> dict[str, Any]:
    """recorded_at and seq differ between two logs of the same events, and a window ends
    now (so do the rates over it); the rest may not."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(found)


def test_readers_answer_the_same_after_interleaved_runs_are_pruned(tmp_path: Path) -> None:
    data, alone = tmp_path / "data", tmp_path / "alone"
    write(data, KEPT + PRUNED)
    write(alone, KEPT)  # a log that never held the pruned runs
    before = answers(data)
    exported = [json.loads(line) for line in cli(data, "export").stdout.splitlines()]
    archive = tmp_path / "archive.jsonl.gz"
    pruned = cli(
        data, "prune", "--ended-before", AFTER, "--workflow", "flow-gone", "--archive", archive
    )
    assert pruned.returncode == 0 and pruned.stdout.startswith("pruned 2 runs"), pruned.stderr
    after = answers(data)
    assert {k: v for k, v in after.items() if k in KEPT} == {
        k: v for k, v in before.items() if k in KEPT
    }
    assert drop_volatile(after) == drop_volatile(answers(alone))
    # export: the kept runs' lines unchanged (seq with gaps), then the tombstone
    now = [json.loads(line) for line in cli(data, "export").stdout.splitlines()]
    kept = [e for e in exported if e["run_id"] in KEPT]
    assert [e for e in now if e["run_id"] in KEPT] == kept
    assert [e["type"] for e in now[len(kept) :]] == ["RunsPruned"]
    seqs = [e["seq"] for e in now]
    assert seqs == sorted(seqs) and seqs[-1] == exported[-1]["seq"] + 1  # gaps, never reused
    assert any(b - a > 1 for a, b in itertools.pairwise(seqs))
    shown = cli(data, "show", PRUNED[0])
    assert shown.returncode == 2
    assert shown.stderr.startswith(f"error: run '{PRUNED[0]}' was pruned from ")
    assert str(archive) in shown.stderr


def test_a_driving_engine_goes_on_across_a_prune_made_by_another_process(tmp_path: Path) -> None:
    """`wfa prune` while an engine drives: the engine's follower crosses the gaps, a
    run submitted afterwards completes, and the engine knows where the pruned ones went."""
    data = tmp_path / "data"
    spec = workflow(step("a", call=NOOP), step("b", after=["a"], call=NOOP), name="flow")
    archive = tmp_path / "archive.jsonl.gz"
    with Engine(data_dir=data) as eng:
        ended = [eng.submit(spec) for _ in range(3)]
        assert all(h.wait(timeout=60).status == "succeeded" for h in ended)
        pruned = cli(data, "prune", "--ended-before", "0s", "--archive", archive)
        assert pruned.returncode == 0 and pruned.stdout.startswith("pruned 3 runs"), pruned.stderr
        later = eng.submit(spec)
        assert later.wait(timeout=60).status == "succeeded"
        assert [r.run_id for r in eng.runs()] == [later.id]
        with pytest.raises(UnknownRunError, match=f"was pruned from .* into {archive}"):
            eng.handle(ended[0].id)


def test_prune_says_how_far_it_got(tmp_path: Path) -> None:
    """What a long prune reports (`wfa prune` shows it on a terminal), phase by phase."""
    data = tmp_path / "data"
    write(data, KEPT + PRUNED)
    heard: list[str] = []
    with EventStore.open(data / EVENTS, Event, indexer=RunIndexer()) as store:
        report = prune(store, data, PRUNED, tmp_path / "archive.jsonl.gz", say=heard.append)
    assert report.runs == 2
    assert heard == [
        "archiving runs: 0 of 2",
        "removing runs from the log: 0 of 2",
        "removing the pruned runs' attempt files",
    ]
