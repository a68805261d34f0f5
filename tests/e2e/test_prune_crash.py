"""Prune and compact survive SIGKILL at any moment: every run's events are in the log
or in the archive exactly once afterwards, and the directory opens cleanly."""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.scale_bench import ended_run, flow
from engine.input.datadir import EVENTS
from engine.rules.events import Event, run_stream
from engine.run_index import RunIndexer, list_runs, pruned_into
from eventstore import EventStore

ROOT = Path(__file__).resolve().parents[2]
RUNS = 120


def fill(data: Path) -> dict[str, int]:
    rng = random.Random(7)
    spec = flow("crash")
    counts = {}
    with EventStore.open(data / EVENTS, Event, indexer=RunIndexer()) as store:
        for i in range(RUNS):
            run_id = f"r{i:04d}"
            events = ended_run(run_id, spec, 1000.0 + i, rng)
            store.append(run_stream(run_id), events, 0)
            counts[run_id] = len(events)
    return counts


def union(data: Path, archive: Path) -> dict[str, list[int]]:
    """Run id -> the stream versions found, from the log and the archive together."""
    found: dict[str, list[int]] = {}
    with EventStore.open(data / EVENTS, Event, create=False, indexer=RunIndexer()) as store:
        for rec in store.read_all():
            if rec.stream.startswith("run/"):
                found.setdefault(rec.stream[4:], []).append(rec.version)
        pruned = {r for r in found if pruned_into(store, r)}
        assert not pruned  # a pruned run has no events left in the log
        listed = {row.run_id for row in list_runs(store)}
        assert listed == set(found)  # the index agrees with the log
    if archive.exists():
        with gzip.open(archive, "rb") as lines:
            archived: dict[str, list[int]] = {}
            for line in lines:
                row = json.loads(line)
                archived.setdefault(row["run_id"], []).append(row["seq"])
        for run_id, seqs in archived.items():
            if run_id not in found:  # in both only between archive and removal
                found[run_id] = list(range(1, len(seqs) + 1))
    return found


def wfa(data: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--data", str(data), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_prune_and_compact_killed_at_random_moments_lose_and_duplicate_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    counts = fill(data)
    archive = tmp_path / "archive.jsonl.gz"
    rng = random.Random(13)
    cutoffs = sorted(rng.sample(range(1000, 1000 + RUNS + 10), 12))
    kills = 0
    for round_, cutoff in enumerate(cutoffs * 2):
        # ended_at of run i is ~1000 + i + its steps' seconds: a moving cut-off
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cutoff + 10))
        args = (
            ["compact"]
            if round_ % 3 == 2
            else ["prune", "--ended-before", at, "--archive", str(archive)]
        )
        child = wfa(data, *args)
        time.sleep(rng.uniform(0.0, 0.6))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait()
        found = union(data, archive)
        assert set(found) == set(counts)
        for run_id, versions in found.items():
            assert sorted(versions) == list(range(1, counts[run_id] + 1)), run_id
    assert kills >= 1
    # a final prune with the same archive finishes what was cut short
    final = wfa(data, "prune", "--ended-before", "0s", "--archive", str(archive))
    assert final.wait() == 0, final.stderr.read() if final.stderr else ""
    found = union(data, archive)
    assert set(found) == set(counts)
    with gzip.open(archive, "rb") as lines:
        rows = [json.loads(line) for line in lines]
    assert len(rows) == sum(counts.values())  # each event archived exactly once
    with EventStore.open(data / EVENTS, Event, create=False, indexer=RunIndexer()) as store:
        assert not [r for r in store.read_all() if r.stream.startswith("run/")]
