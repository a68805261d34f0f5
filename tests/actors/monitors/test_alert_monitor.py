"""The alert monitor through a real store and a real `alert_command` subprocess."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from actors.monitors.alerts import AlertMonitor
from engine.input.loading import workflow_from_data
from engine.rules import events as ev
from engine.rules.config import MonitoringConfig
from engine.rules.errors import ErrorKind
from engine.rules.events import Event, run_stream
from engine.rules.policies.alerts import ALERTS_STREAM
from eventstore import EventStore


def keys(changes: list[Any]) -> list[tuple[str, str]]:
    return [(type(c).__name__, c.rule) for c in changes]


def test_monitor_appends_alerts_to_the_log_and_runs_the_command(tmp_path: Path) -> None:
    """Real store, real subprocess: the command gets the alert as JSON on stdin."""
    out = tmp_path / "alerts.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')"
    monitoring = MonitoringConfig(
        check_interval=60, alert_threshold=2, alert_command=(sys.executable, "-c", script)
    )
    flow = workflow_from_data({"name": "flow", "steps": [{"id": "a", "run": ["true"]}]})
    with EventStore.open(tmp_path / "events", Event) as store:
        for n, at in enumerate((100.0, 101.0)):
            store.append(
                run_stream(f"r{n}"),
                [
                    ev.RunSubmitted(at=at, run_id=f"r{n}", spec=flow),
                    ev.StepFailed(at=at, step_id="a", kind=ErrorKind.USER, message="x"),
                    ev.RunFailed(at=at, reason="x"),
                ],
            )
        monitor = AlertMonitor(store, monitoring)  # checked by hand, at chosen times
        assert keys(monitor.check(now=102.0)) == [("AlertRaised", "failures")]
        assert monitor.check(now=103.0) == []
        assert keys(monitor.check(now=102.0 + 600 + 1)) == [("AlertResolved", "failures")]
        logged = [r.event for r in store.read_stream(ALERTS_STREAM)]
        restarted = AlertMonitor(store, monitoring)
        restarted.start()  # a thread whose first check runs at once; stop() joins it
        restarted.stop()
        assert restarted.state.open == frozenset()
    assert [type(e).__name__ for e in logged] == ["AlertRaised", "AlertResolved"]
    sent = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(s["type"], s["rule"]) for s in sent] == [
        ("AlertRaised", "failures"),
        ("AlertResolved", "failures"),
    ]
    assert "4 failures" in sent[0]["message"]
