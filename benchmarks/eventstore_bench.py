"""Event store throughput against raw LMDB, with the targets from issue 2.

Run: ``python benchmarks/eventstore_bench.py [--runs 3] [--quick] [--dir DIR]``.
Prints one table of medians. Not part of the test suite.

(a) raw LMDB, one put+commit per 200-byte event, sync
(b) raw LMDB, 100 events per commit, sync
(c) EventStore.append from 1, 8 and 64 threads, sync (one event per append)
(c') the same from 64 threads with 10 events per append, as the engine appends
(d) the same in relaxed mode
(e) replay: read_all of N events, decoded, vs a raw LMDB cursor scan with msgspec decode
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Callable

import lmdb
import msgspec

from eventstore import EventStore
from eventstore import _format as fmt


class Sample(msgspec.Struct, frozen=True, tag=True):
    run_id: str
    step: str
    attempt: int
    detail: str


EVENT = Sample("run-0000001", "build", 1, "x" * 139)
PAYLOAD = msgspec.msgpack.encode(EVENT)
assert 195 <= len(PAYLOAD) <= 205, len(PAYLOAD)


def raw_env(path: pathlib.Path) -> lmdb.Environment:
    return lmdb.open(str(path), map_size=4 << 30, sync=True, metasync=True)


def bench_raw(path: pathlib.Path, events: int, per_commit: int) -> float:
    env = raw_env(path)
    start = time.perf_counter()
    position = 0
    for _ in range(events // per_commit):
        with env.begin(write=True) as txn:
            for _ in range(per_commit):
                position += 1
                txn.put(struct.pack(">Q", position), PAYLOAD, append=True)
    elapsed = time.perf_counter() - start
    env.close()
    return position / elapsed


def bench_store(
    path: pathlib.Path, durability: str, threads: int, seconds: float, per_call: int = 1
) -> float:
    store = EventStore.open(path, Sample, durability=durability)  # type: ignore[arg-type]
    counts = [0] * threads
    events = [EVENT] * per_call
    go = threading.Event()
    deadline = [0.0]

    def work(t: int) -> None:
        go.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            store.append(f"stream-{t}", events)
            n += per_call
        counts[t] = n

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    deadline[0] = start + seconds
    go.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    store.close()
    return sum(counts) / elapsed


def fill(path: pathlib.Path, events: int) -> None:
    with EventStore.open(path, Sample, durability="relaxed") as store:
        for i in range(0, events, 1000):
            store.append(f"run-{i // 1000 % 500}", [EVENT] * min(1000, events - i))


def bench_replay(path: pathlib.Path) -> float:
    with EventStore.open(path, Sample, create=False) as store:
        start = time.perf_counter()
        n = 0
        for record in store.read_all():
            n += record.position > 0
        return n / (time.perf_counter() - start)


def bench_raw_scan(path: pathlib.Path) -> float:
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    db = env.open_db(fmt.DB_EVENTS)
    decoder = msgspec.msgpack.Decoder(tuple[int, str, int, float, Sample])
    decode = decoder.decode
    start = time.perf_counter()
    n = 0
    with env.begin(db=db) as txn:
        for value in txn.cursor().iternext(keys=False, values=True):
            n += decode(value)[0] > 0
    elapsed = time.perf_counter() - start
    env.close()
    return n / elapsed


def fresh(base: pathlib.Path, name: str) -> pathlib.Path:
    path = base / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1, help="report the median of N runs")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = parser.parse_args()
    single_commits = 300 if args.quick else 2000
    batched = 20_000 if args.quick else 100_000
    seconds = 0.5 if args.quick else 2.0
    replay_events = 100_000 if args.quick else 1_000_000

    base = pathlib.Path(tempfile.mkdtemp(prefix="eventstore-bench-", dir=args.dir))
    repo_dev = os.stat(pathlib.Path(__file__).resolve().parent).st_dev
    same = "same" if os.stat(base).st_dev == repo_dev else "DIFFERENT"
    print(f"scratch dir {base} ({same} filesystem as the repo), {args.runs} run(s)")

    results: dict[str, list[float]] = {}

    def measure(label: str, fn: Callable[[], float]) -> None:
        results.setdefault(label, []).append(fn())

    try:
        replay_path = base / "replay"
        fill(replay_path, replay_events)
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs} ...", flush=True)
            measure(
                "(a) raw LMDB, 1 event/commit, sync",
                lambda: bench_raw(fresh(base, "a"), single_commits, 1),
            )
            measure(
                "(b) raw LMDB, 100 events/commit, sync",
                lambda: bench_raw(fresh(base, "b"), batched, 100),
            )
            for durability, tag in (("sync", "(c)"), ("relaxed", "(d)")):
                for threads in (1, 8, 64):
                    measure(
                        f"{tag} store.append, {threads:>2} threads, {durability}",
                        lambda d=durability, t=threads: bench_store(
                            fresh(base, "c"), d, t, seconds
                        ),
                    )
            measure(
                "(c') store.append, 64 threads x 10 events, sync",
                lambda: bench_store(fresh(base, "c"), "sync", 64, seconds, per_call=10),
            )
            measure(
                f"(e) replay read_all, {replay_events:,} events", lambda: bench_replay(replay_path)
            )
            measure(
                f"(e) raw cursor scan + decode, {replay_events:,}",
                lambda: bench_raw_scan(replay_path),
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)

    median = {label: statistics.median(values) for label, values in results.items()}
    print()
    print(f"{'measurement':<48} {'events/s (median)':>18}   runs")
    for label, value in median.items():
        runs = ", ".join(f"{v:,.0f}" for v in results[label])
        print(f"{label:<48} {value:>18,.0f}   [{runs}]")

    b = median["(b) raw LMDB, 100 events/commit, sync"]
    c64 = median["(c) store.append, 64 threads, sync"]
    c64x10 = median["(c') store.append, 64 threads x 10 events, sync"]
    replay = median[f"(e) replay read_all, {replay_events:,} events"]
    raw_scan = median[f"(e) raw cursor scan + decode, {replay_events:,}"]
    print()
    print("targets")
    checks = [
        ("64 appenders sync >= 50% of (b)", c64 / b, 0.5, f"{c64 / b:.0%} of (b)"),
        ("(c') 64 x 10 events sync >= 50% of (b)", c64x10 / b, 0.5, f"{c64x10 / b:.0%} of (b)"),
        ("replay >= 500,000 events/s", replay / 500_000, 1.0, f"{replay:,.0f}/s"),
        ("replay >= 70% of raw scan", replay / raw_scan, 0.7, f"{replay / raw_scan:.0%} of raw"),
    ]
    for name, ratio, need, shown in checks:
        print(f"  {'PASS' if ratio >= need else 'MISS'}  {name:<40} {shown}")


if __name__ == "__main__":
    main()
