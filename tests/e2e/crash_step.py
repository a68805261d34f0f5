"""A step for the crash test: logs its start and end, with the engine epoch it ran under.

argv: LOG SECONDS [MODE]; MODE `fail-once` fails the first attempt of the run's
step, `slow-once` sleeps 60 s on its first attempt (so that it times out).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

log, seconds = Path(sys.argv[1]), float(sys.argv[2])
mode = sys.argv[3] if len(sys.argv) > 3 else ""
run, step = os.environ["WFA_RUN_ID"], os.environ["WFA_STEP_ID"]
key, attempt = os.environ["WFA_IDEMPOTENCY_KEY"], os.environ["WFA_ATTEMPT"]
epoch = os.environ["WFA_TEST_EPOCH"]


def write(line: str) -> None:
    with log.open("a") as f:  # one short append: atomic on a local file system
        f.write(line + "\n")


write(f"START {epoch} {run} {step} {key} {attempt} {os.getpid()}")
marker = log.parent / f"marker-{run}-{step}"
first = not marker.exists()
marker.touch()
if mode == "fail-once" and first:
    sys.exit(1)
time.sleep(60 if mode == "slow-once" and first else seconds)
write(f"DONE {epoch} {run} {step}")
