"""`wfa serve`'s cron schedules through the real executable: each schedule's next fire
time is printed, and `overlap: skip` submits no copy while the previous run waits."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from tests.e2e.test_cli_runs import as_json, cli, write
from tests.e2e.test_cli_serve import output, serve  # noqa: F401 (a fixture)
from tests.support import eventually

NIGHTLY = """
name: nightly
schedule: {cron: "30 2 * * *", overlap: queue}
steps:
  - {id: build, run: ["python3", "-c", "pass"]}
"""

WAITING = """
name: waits-for-approval
schedule: {cron: "* * * * * *", overlap: skip}
steps:
  - {id: gate, approval: true, run: ["python3", "-c", "pass"]}
"""


def test_serve_prints_each_schedules_next_fire_time_and_overlap_policy(
    tmp_path: Path,
    serve: Callable[..., subprocess.Popen[str]],  # noqa: F811 (the fixture)
) -> None:
    server = serve(tmp_path / "data", write(tmp_path, "nightly.yaml", NIGHTLY))
    line = eventually(
        lambda: next((x for x in output(tmp_path).splitlines() if "schedule: nightly" in x), None)
    )
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0
    assert "at `30 2 * * *`, overlap queue; next at " in line
    found = re.search(r"next at (\S+)$", line)
    assert found is not None, line
    at = datetime.fromisoformat(found.group(1))
    assert at.tzinfo is not None and (at.hour, at.minute, at.second) == (2, 30, 0)
    now = datetime.now().astimezone()
    assert now < at <= now + timedelta(days=1)


def test_overlap_skip_submits_no_copy_while_the_previous_run_waits_for_approval(
    tmp_path: Path,
    serve: Callable[..., subprocess.Popen[str]],  # noqa: F811 (the fixture)
) -> None:
    data = tmp_path / "data"
    server = serve(data, write(tmp_path, "waiting.yaml", WAITING))
    eventually(lambda: output(tmp_path).count("schedule: waits-for-approval skipped") >= 2)
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0
    runs = as_json(cli(data, "runs", "--json"))
    assert len(runs) == 1, runs
    assert f"skipped: run {runs[0]['run_id']} has not ended (overlap skip)" in output(tmp_path)
