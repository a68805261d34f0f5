"""The engine process of the crash test: drives a data directory until killed.

argv: DATA CONFIG; with `--until-done` it exits 0 once every run has ended.
"""

from __future__ import annotations

import sys
import time

from engine import Engine

if __name__ == "__main__":
    data, config = sys.argv[1], sys.argv[2]
    with Engine(data_dir=data, config=config) as engine:
        assert engine.drives, "another engine drives the directory"
        while True:
            time.sleep(0.2)
            if "--until-done" in sys.argv and all(
                r.status in {"succeeded", "failed", "cancelled", "timed_out"} for r in engine.runs()
            ):
                break
