"""Attempt logs keep at most `max_log_bytes` per stream: the head, a marker, the tail."""

from __future__ import annotations

import os
import re
import signal
import threading
from pathlib import Path

import pytest

from actors.execution import AttemptOutcome
from actors.execution.log_cap import CappedLog
from tests.actors.test_execution_call import call
from tests.actors.test_execution_run import py, run
from tests.support import gone, wait_for_file

MB = 1 << 20
MARKER = re.compile(
    rb"\n?\[\.\.\. (\d+) bytes dropped: .*execution\.max_log_bytes: \d+\) \.\.\.\]\n"
)


def split_capped(data: bytes, head_size: int) -> tuple[bytes, int, bytes]:
    """Head, bytes dropped, tail of a capped log: the marker comes right after the head
    (on a line of its own), and nowhere else."""
    found = MARKER.match(data, head_size)
    assert found is not None, data[head_size : head_size + 200]
    assert MARKER.search(data, found.end()) is None
    return data[:head_size], int(found.group(1)), data[found.end() :]


def bounded(target: object, timeout: float = 120) -> AttemptOutcome:
    """Run the attempt on a thread; fail (not hang) the test if it never ends."""
    found: list[AttemptOutcome] = []
    worker = threading.Thread(target=lambda: found.append(target()), daemon=True)  # type: ignore[operator]
    worker.start()
    worker.join(timeout)
    assert found, "the attempt never ended"
    return found[0]


def test_capped_log_keeps_head_marker_and_tail_and_counts_every_dropped_byte(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log"
    log = CappedLog(os.open(path, os.O_WRONLY | os.O_CREAT), 100)
    lines = [f"line {i}\n".encode() for i in range(1000)]
    for line in lines:
        log.write(line)
    log.close()
    head, dropped, tail = split_capped(path.read_bytes(), 50)
    whole = b"".join(lines)
    assert whole.startswith(head)
    assert whole.endswith(tail) and tail.startswith(b"line ") and len(tail) <= 50
    assert len(head) + dropped + len(tail) == len(whole)


def test_a_log_under_the_cap_or_without_one_is_kept_whole(tmp_path: Path) -> None:
    for limit, name in ((1000, "under"), (None, "none"), (0, "zero")):
        path = tmp_path / name
        log = CappedLog(os.open(path, os.O_WRONLY | os.O_CREAT), limit)
        log.write(b"x" * 999 if limit else b"y" * 5000)
        log.close()
        assert path.read_bytes() == (b"x" * 999 if limit else b"y" * 5000)


def test_a_run_step_printing_50_mb_leaves_the_cap_with_its_first_and_last_lines(
    tmp_path: Path,
) -> None:
    code = (
        "import sys\n"
        "for i in range(2_500_000): sys.stdout.write(f'line {i:014d}\\n')\n"  # 50 MB
        "sys.stderr.write('only error\\n')\n"
    )
    outcome = run(tmp_path, py(code), max_log_bytes=MB)
    assert outcome.succeeded, outcome.message
    data = (tmp_path / "attempt" / "stdout.log").read_bytes()
    assert len(data) <= MB + 200
    head, dropped, tail = split_capped(data, MB // 2)
    assert head.startswith(b"line 00000000000000\n")
    assert tail.endswith(b"line 00000002499999\n") and tail.startswith(b"line ")
    assert len(head) + dropped + len(tail) == 2_500_000 * 20
    assert outcome.stdout_tail.endswith("line 00000002499999\n")
    assert (tmp_path / "attempt" / "stderr.log").read_bytes() == b"only error\n"


def test_a_step_printing_for_ever_never_has_more_than_the_head_on_disk_while_it_runs(
    tmp_path: Path,
) -> None:
    flag = tmp_path / "printed"
    code = (
        "import sys\n"
        "for i in range(300_000): print(f'line {i:012d}')\n"  # 5.4 MB
        "sys.stdout.flush(); open(sys.argv[1], 'w').write('x')\n"
        "while True: print('and more')\n"
    )
    cancel = threading.Event()
    found: list[AttemptOutcome] = []
    worker = threading.Thread(
        target=lambda: found.append(run(tmp_path, py(code, str(flag)), cancel, max_log_bytes=MB))
    )
    worker.start()
    try:
        wait_for_file(flag)
        assert (tmp_path / "attempt" / "stdout.log").stat().st_size == MB // 2
    finally:
        cancel.set()
        worker.join(60)
    assert found and found[0].cancelled
    _, dropped, tail = split_capped((tmp_path / "attempt" / "stdout.log").read_bytes(), MB // 2)
    assert dropped > 4 * MB and b"and more\n" in tail  # it was killed mid-line, maybe


def test_a_daemon_holding_the_steps_stdout_cannot_hold_the_attempts_end(tmp_path: Path) -> None:
    pid_file = tmp_path / "daemon"
    # The daemon leaves the group and its parent exits at once: nothing ends it but us.
    script = '( setsid sleep 120 & echo $! > "$1" ); echo done; exec >&-; echo bye >&2'
    try:
        outcome = bounded(lambda: run(tmp_path, ["sh", "-c", script, "sh", str(pid_file)]))
        assert outcome.succeeded, outcome.message
        assert (tmp_path / "attempt" / "stdout.log").read_text() == "done\n"
        assert (tmp_path / "attempt" / "stderr.log").read_text() == "bye\n"
    finally:
        daemon = int(wait_for_file(pid_file))
        if not gone(daemon):
            os.kill(daemon, signal.SIGKILL)


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_call_steps_prints_and_log_records_are_capped_alike(
    tmp_path: Path, isolation: str
) -> None:
    outcome = call(
        tmp_path,
        "prints_lines",
        params={"lines": 200_000},
        isolation=isolation,
        max_log_bytes=100_000,
    )
    assert outcome.succeeded, outcome.message
    data = (tmp_path / "attempt" / "stdout.log").read_bytes()
    assert len(data) <= 100_000 + 200
    head, _, tail = split_capped(data, 50_000)
    assert head.startswith(b"line 0\nline 1\n") and tail.endswith(b"line 199999\n")
    err_head, _, err_tail = split_capped((tmp_path / "attempt" / "stderr.log").read_bytes(), 50_000)
    assert b"logged 0\n" in err_head and err_tail.endswith(b"logged 199900\n")
