"""The engine lock tells a new engine whether the one before it stopped cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.input.datadir import EngineLock


def test_a_released_lock_means_a_clean_stop(tmp_path: Path) -> None:
    first = EngineLock(tmp_path)
    assert first.acquire() and not first.previous_crashed  # a new directory
    first.release()
    second = EngineLock(tmp_path)
    assert second.acquire() and not second.previous_crashed
    second.release()


def test_a_lock_left_by_a_killed_engine_means_it_crashed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from engine.input.datadir import EngineLock;"
            "assert EngineLock(Path(sys.argv[1])).acquire(); print('held', flush=True);"
            "time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    after = EngineLock(tmp_path)
    assert after.acquire() and after.previous_crashed
    after.release()
