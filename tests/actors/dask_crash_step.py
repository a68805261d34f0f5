"""A `run` step of the dask crash test, run by Dask workers: logs its start and end.

argv: LOG EPOCH_FILE SECONDS. The engine epoch is read from EPOCH_FILE (the test
writes it before each engine start): the workers do not inherit the engine's
environment.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

log, epoch_file, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
run, step = os.environ["WFA_RUN_ID"], os.environ["WFA_STEP_ID"]
key, attempt = os.environ["WFA_IDEMPOTENCY_KEY"], os.environ["WFA_ATTEMPT"]
epoch = epoch_file.read_text().strip()


def write(line: str) -> None:
    with log.open("a") as f:  # one short append: atomic on a local file system
        f.write(line + "\n")


write(f"START {epoch} {run} {step} {key} {attempt} {os.getpid()}")
time.sleep(seconds)
write(f"DONE {epoch} {run} {step}")
