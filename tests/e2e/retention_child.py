"""The child of the prune/compact crash test: prunes or compacts until done or killed,
with a line on stdout at each step so that the parent's SIGKILL lands mid-work.

argv: DATA prune ENDED_BEFORE ARCHIVE: prunes the runs `wfa prune` would, a few per
call of the same `prune` (each archives, fsyncs, then removes); prints `ready N`
(N calls to make), a line after each call, then `done`.
argv: DATA compact: compacts the log again and again, as `wfa compact` does, printing
`ready` and then a line after each compaction, until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine import Engine
from engine.input.datadir import COMPACTING, EVENTS
from engine.retention import candidates, prune
from eventstore import compact_store

SLICE = 3

if __name__ == "__main__":
    data, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "compact":
        print("ready", flush=True)
        while True:
            compact_store(data / EVENTS, data / COMPACTING)
            print("compacted", flush=True)
    ended_before, archive = float(sys.argv[3]), Path(sys.argv[4])
    with Engine(data_dir=data, drive=False, create=False) as engine:
        run_ids = candidates(engine.store, ended_before)
        slices = [run_ids[i : i + SLICE] for i in range(0, len(run_ids), SLICE)]
        print(f"ready {len(slices)}", flush=True)
        for chosen in slices:
            prune(engine.store, engine.data_dir, chosen, archive)
            print("pruned", flush=True)
    print("done", flush=True)
