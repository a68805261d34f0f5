"""Prune and compact survive SIGKILL at any moment: a child prunes or compacts, saying
where it is on stdout, and is killed mid-work (at least 20 kills of each prune and 10
of compact, each counted only if the child still had work); after every kill the log and
the archive together hold every event of every run exactly once, the directory opens
cleanly and its index agrees with the log."""

from __future__ import annotations

import gzip
import json
import os
import random
import select
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
CHILD = Path(__file__).with_name("retention_child.py")
RUNS = 400
T0 = 1000.0  # run i is submitted at T0 + i and ends up to ~28 s later
PRUNE_KILLS, COMPACT_KILLS = 20, 10


def fill(data: Path) -> dict[str, list[int]]:
    """Run id -> the positions of its events."""
    rng = random.Random(7)
    spec = flow("crash")
    positions = {}
    with EventStore.open(data / EVENTS, Event, indexer=RunIndexer()) as store:
        for i in range(RUNS):
            run_id = f"r{i:04d}"
            events = ended_run(run_id, spec, T0 + i, rng)
            positions[run_id] = store.append(run_stream(run_id), events, 0)
    return positions


def archived(archive: Path) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    if archive.exists():
        with gzip.open(archive, "rb") as lines:
            for line in lines:
                row = json.loads(line)
                found.setdefault(row["run_id"], []).append(row["seq"])
    return found


def assert_each_run_whole_once(data: Path, archive: Path, runs: dict[str, list[int]]) -> int:
    """Every run whole in the log, or whole once in the archive (by position), or (only
    between archiving and removal) both; the index agrees with the log. How many are
    pruned."""
    in_log: dict[str, list[int]] = {}
    with EventStore.open(data / EVENTS, Event, create=False, indexer=RunIndexer()) as store:
        for rec in store.read_all():
            if rec.stream.startswith("run/"):
                assert rec.version == len(in_log.setdefault(rec.stream[4:], [])) + 1
                in_log[rec.stream[4:]].append(rec.position)
        assert {row.run_id for row in list_runs(store)} == set(in_log)
        assert not [r for r in in_log if pruned_into(store, r)]
    in_archive = archived(archive)
    assert set(in_log) | set(in_archive) == set(runs)
    for run_id, positions in runs.items():
        for found in (in_log.get(run_id), in_archive.get(run_id)):
            assert found is None or found == positions, run_id
    return len(set(runs) - set(in_log))


class Lines:
    """A child's stdout, line by line, never waiting longer than asked."""

    def __init__(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        self.fd = child.stdout.fileno()
        self.buffer = b""

    def next(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.fd], [], [], left)[0], "no line in time"
            chunk = os.read(self.fd, 4096)
            assert chunk, "the child ended early"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def child(data: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(data), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wfa(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--data", str(data), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prune_and_compact_killed_mid_work_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runs = fill(data)
    archive = tmp_path / "archive.jsonl.gz"
    rng = random.Random(13)
    kills = {"prune": 0, "compact": 0}
    cutoff = T0
    for round_ in range(200):
        if kills["prune"] >= PRUNE_KILLS and kills["compact"] >= COMPACT_KILLS:
            break
        mode = "compact" if round_ % 3 == 2 and kills["compact"] < COMPACT_KILLS else "prune"
        if mode == "prune":
            cutoff = min(cutoff + rng.uniform(4, 12), T0 + RUNS)
            worker = child(data, "prune", str(cutoff), str(archive))
        else:
            worker = child(data, "compact")
        try:
            lines = Lines(worker)
            ready = lines.next().split()
            assert ready[0] == "ready"
            steps = int(ready[1]) if mode == "prune" else 3
            if steps:  # read some of the steps it reports, leaving at least one to do
                for _ in range(rng.randrange(steps)):
                    lines.next()
                time.sleep(rng.uniform(0, 0.01))
                if worker.poll() is None:
                    worker.send_signal(signal.SIGKILL)
                    worker.wait(60)
                    kills[mode] += "done" not in lines.buffer.decode()
        finally:
            if worker.poll() is None:
                worker.kill()
            stderr = worker.communicate(timeout=60)[1].decode()
        assert worker.returncode in (0, -signal.SIGKILL), stderr
        assert_each_run_whole_once(data, archive, runs)
    assert kills == {"prune": PRUNE_KILLS, "compact": COMPACT_KILLS}, kills
    # the real command, given the same archive, finishes whatever was cut short
    finished = wfa(data, "prune", "--ended-before", "0s", "--archive", str(archive))
    assert finished.returncode == 0, finished.stderr
    assert assert_each_run_whole_once(data, archive, runs) == RUNS
    rows = sum(len(seqs) for seqs in archived(archive).values())
    assert rows == sum(len(p) for p in runs.values())  # each event archived exactly once
    assert wfa(data, "compact").returncode == 0
    checked = wfa(data, "check")
    assert checked.returncode == 0, checked.stderr
