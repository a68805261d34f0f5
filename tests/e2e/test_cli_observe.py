"""Observability end to end: traces over real OTLP/HTTP (after the fact and live), the
Prometheus endpoint scraped over HTTP, and `stats`, `traces`, `watch` through the real
executable.

Live export drives real runs with `actors.runtime.Runtime` built here with the
Observer as its listener, as the facade wires it: the Observer's trace
exporter process follows the event log and sends the spans to a real receiver.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.runtime import Runtime
from engine import Engine
from engine.input.datadir import EVENTS, check_data_dir
from engine.input.loading import workflow_from_data
from engine.rules.config import AgentConfig, EngineConfig, TelemetryConfig, TraceExport
from engine.rules.events import Event, RunSubmitted, run_stream
from engine.telemetry import trace_id_of
from engine.telemetry.observer import Observer
from eventstore import EventStore
from tests.e2e.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.e2e.test_cli_runs import EXAMPLES, FAILING, as_json, cli, write
from tests.e2e.test_cli_validate import wfa

FLAKY = workflow_from_data(
    {
        "name": "flaky",
        "steps": [
            {"id": "prepare", "run": ["python3", "-c", "pass"]},
            {
                "id": "boom",
                "after": ["prepare"],
                "run": ["python3", "-c", "import sys; sys.exit(3)"],
                "retry": {"max_attempts": 2, "initial_delay": 0.01},
            },
        ],
    }
)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A data directory with a succeeded parallel-build run and a failed run."""
    tmp = tmp_path_factory.mktemp("observe")
    data = tmp / "data"
    ok = as_json(cli(data, "run", EXAMPLES / "parallel-build.yaml", "--json"))
    bad = as_json(cli(data, "run", write(tmp, "failing.yaml", FAILING), "--json"))
    assert (ok["status"], bad["status"]) == ("succeeded", "failed")
    return data, ok["run_id"], bad["run_id"]


def check_tree(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    """One trace, one root, every parent present, children within their parents' time."""
    assert len({s.trace_id for s in spans}) == 1
    ids = {s.span_id: s for s in spans}
    assert len(ids) == len(spans)
    roots = [s for s in spans if s.parent_id is None]
    assert len(roots) == 1
    for span in spans:
        assert span.start_ns <= span.end_ns
        if span.parent_id is not None:
            parent = ids[span.parent_id]
            assert parent.start_ns <= span.start_ns and span.end_ns <= parent.end_ns, span.name
    return {s.name: s for s in spans}


def test_traces_export_sends_each_run_as_one_trace_over_otlp(logged: Any) -> None:
    data, ok, bad = logged
    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": "wfa-test"}
        for run_id in (ok, bad):
            result = wfa("--data", data, "traces", run_id, "--export", env=env)
            assert result.returncode == 0, result.stderr
            assert "exported" in result.stderr
        spans = receiver.spans
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    assert set(by_trace) == {trace_id_of(ok), trace_id_of(bad)}
    good = check_tree(by_trace[trace_id_of(ok)])
    assert set(good) == {
        "run parallel-build", *(f"step {s}" for s in ("design", "ui", "api", "integration")),
        *(f"attempt {s}#1" for s in ("design", "ui", "api", "integration")),
    }  # fmt: skip
    assert good["step ui"].parent_id == good["run parallel-build"].span_id
    assert good["attempt ui#1"].parent_id == good["step ui"].span_id
    assert good["attempt ui#1"].attributes["wfa.run_id"] == ok
    assert good["attempt ui#1"].attributes["wfa.workflow"] == "parallel-build"
    assert good["attempt ui#1"].attributes["wfa.step_id"] == "ui"
    assert good["attempt ui#1"].attributes["wfa.attempt"] == 1
    assert good["attempt ui#1"].attributes["wfa.agent"].startswith("agent-")
    assert good["attempt ui#1"].end_ns - good["attempt ui#1"].start_ns >= 150_000_000  # sleeps 0.2
    assert good["run parallel-build"].status_code == 1
    assert {s.service_name for s in spans} == {"wfa-test"}
    failed = check_tree(by_trace[trace_id_of(bad)])
    assert failed["step boom"].status_code == 2
    assert failed["step boom"].attributes["wfa.error.kind"] == "user"
    assert "user" in failed["step boom"].status_message
    assert failed["run failing"].status_code == 2


def test_traces_export_with_nothing_listening_fails_quickly(logged: Any) -> None:
    data, ok, _ = logged
    start = time.monotonic()
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = wfa(
        "--data", data, "traces", ok, "--export", env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint}
    )
    assert result.returncode == 1 and "could not export" in result.stderr
    assert time.monotonic() - start < 15


def test_traces_jaeger_json_and_tree_through_the_executable(logged: Any) -> None:
    data, ok, bad = logged
    doc = as_json(cli(data, "traces", ok, "--format", "jaeger-json"))
    (trace,) = doc["data"]
    assert trace["traceID"] == trace_id_of(ok)
    assert trace["processes"]["p1"]["serviceName"] == "workflow-automator"
    assert len(trace["spans"]) == 9
    assert all(s["processID"] == "p1" for s in trace["spans"])
    tree = cli(data, "traces", bad).stdout
    assert "run failing" in tree and "attempt boom#1" in tree and "user" in tree
    assert cli(data, "traces", "nope").returncode == 2


def test_stats_json_through_the_executable(logged: Any) -> None:
    data, _, _ = logged
    figures = as_json(cli(data, "stats", "--json"))
    assert set(figures) == {"window", "totals", "workflows", "steps", "agents", "resources"}
    assert figures["totals"]["runs_ended"] == 2
    assert figures["totals"]["run_success_rate"] == 0.5
    assert figures["totals"]["error_kinds"] == {"user": 1}
    only = as_json(cli(data, "stats", "--json", "--workflow", "failing", "--since", "1h"))
    assert [w["workflow"] for w in only["workflows"]] == ["failing"]
    assert "parallel-build" in cli(data, "stats").stdout
    bad = cli(data, "stats", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_watch_once_draws_runs_agents_resources_and_alerts(logged: Any) -> None:
    data, ok, _ = logged
    out = cli(data, "watch", "--once")
    assert out.returncode == 0, out.stderr
    for text in (ok, "parallel-build", "agent-1", "cpu", "no open alerts"):
        assert text in out.stdout


# ---- live ------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def data_dir(tmp_path: Path) -> Path:
    """A data directory with an (empty) event store, which the exporter process opens."""
    data = check_data_dir(tmp_path / "data", create=True)
    EventStore.open(data / EVENTS, Event).close()
    return data


def traced(data: Path, **telemetry: Any) -> Observer:
    """An Observer exporting live traces of the log in `data`, from its start."""
    return Observer(live_config(**telemetry), events_dir=data / EVENTS, start_position=1)


def drive(data: Path, config: EngineConfig, observer: Observer, runs: int = 1) -> list[str]:
    """Submit `runs` FLAKY runs, drive them with a Runtime whose listener is the observer."""
    with EventStore.open(data / EVENTS, Event) as store:
        runtime = Runtime(store, config, data, listener=observer.on_batch)
        ids = [f"live-{n}" for n in range(runs)]
        try:
            for run_id in ids:
                submitted = RunSubmitted(at=time.time(), run_id=run_id, spec=FLAKY)
                store.append(run_stream(run_id), [submitted], expected_version=0)
                runtime.admit(run_id)
            deadline = time.monotonic() + 30
            for run_id in ids:
                while type(last_event(store, run_id)).__name__ != "RunFailed":
                    assert time.monotonic() < deadline, "run did not end"
                    time.sleep(0.02)
        finally:
            runtime.stop()
    return ids


def last_event(store: EventStore[Any], run_id: str) -> Any:
    version = store.stream_version(run_stream(run_id))
    return next(iter(store.read_stream(run_stream(run_id), version))).event


def live_config(**telemetry: Any) -> EngineConfig:
    return EngineConfig(
        agents=(AgentConfig(name="local", capacity=4),), telemetry=TelemetryConfig(**telemetry)
    )


def test_live_spans_from_the_exporter_process_match_the_log(tmp_path: Path) -> None:
    data = data_dir(tmp_path)
    with OtlpReceiver() as receiver:
        observer = traced(data, traces=TraceExport.OTLP, otlp_endpoint=receiver.url)
        assert observer.traces is not None and observer.traces.pid != os.getpid()
        (run_id,) = drive(data, live_config(), observer)
        observer.close()
        spans = check_tree(receiver.spans)
    assert observer.traces.stats == {"exported": 6, "failed": 0, "dropped": 0}
    assert set(spans) == {"run flaky", "step prepare", "attempt prepare#1", "step boom",
                          "attempt boom#1", "attempt boom#2"}  # fmt: skip
    assert spans["attempt boom#2"].status_code == 2
    assert spans["attempt boom#2"].attributes["wfa.error.kind"] == "user"
    assert spans["run flaky"].attributes["wfa.run_id"] == run_id
    assert spans["run flaky"].trace_id == trace_id_of(run_id)
    assert spans["step boom"].events == ["retry scheduled"]
    with EventStore.open(data / EVENTS, Event, create=False) as store:
        from engine.telemetry import spans_for_run

        rebuilt = {s.name: s for s in spans_for_run(r.event for r in store.read_stream(
            run_stream(run_id)))}  # fmt: skip
    for name, span in spans.items():
        assert (span.span_id, span.parent_id) == (rebuilt[name].span_id, rebuilt[name].parent_id)
        assert abs(span.start_ns / 1e9 - rebuilt[name].start) < 1e-6
        assert abs(span.end_ns / 1e9 - rebuilt[name].end) < 1e-6


def test_nothing_listening_neither_stalls_runs_nor_shutdown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wfa.telemetry")
    data = data_dir(tmp_path)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    observer = traced(data, traces=TraceExport.OTLP, otlp_endpoint=endpoint)
    start = time.monotonic()
    drive(data, live_config(), observer, runs=5)
    took = time.monotonic() - start
    start = time.monotonic()
    observer.close()
    # close waits at most 2 s by design; waiting out the failed exports (about 1 s
    # each, 30 of them) would take far longer than this bound, which leaves room
    # for a loaded machine.
    assert time.monotonic() - start < 5
    assert took < 15
    assert observer.traces is not None and observer.traces.stats is not None
    assert observer.traces.stats["exported"] == 0 and observer.traces.stats["failed"] == 30
    failures = [r for r in caplog.records if "export failed" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in caplog.records]


def test_a_killed_exporter_process_does_not_stop_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="wfa.telemetry")
    config = live_config(traces=TraceExport.OTLP, otlp_endpoint=f"http://127.0.0.1:{closed_port()}")
    engine = Engine(tmp_path / "data", config=config)
    try:
        assert engine.drives and engine._observer is not None
        traces = engine._observer.traces
        assert traces is not None and traces.pid is not None
        os.killpg(traces.pid, signal.SIGKILL)

        def deaths() -> list[str]:
            messages = [r.getMessage() for r in caplog.records]
            return [m for m in messages if "exporter process" in m and "exited" in m]

        deadline = time.monotonic() + 10
        while not deaths():
            assert time.monotonic() < deadline, "the exporter's death was not logged"
            time.sleep(0.02)
        runs = [engine.submit(FLAKY) for _ in range(3)]
        assert [run.wait(timeout=30).status for run in runs] == ["failed"] * 3
    finally:
        start = time.monotonic()
        engine.close()
        assert time.monotonic() - start < 5
    assert len(deaths()) == 1


@pytest.fixture
def prometheus_observer() -> Iterator[Observer]:
    observer = Observer(live_config(prometheus_port=closed_port()))
    yield observer
    observer.close()


def test_prometheus_endpoint_serves_the_run_metrics(
    tmp_path: Path, prometheus_observer: Observer
) -> None:
    assert prometheus_observer.prometheus is not None
    prometheus_observer.set_resource_usage("cpu", 42.0)
    drive(data_dir(tmp_path), live_config(), prometheus_observer, runs=2)
    url = f"http://127.0.0.1:{prometheus_observer.prometheus.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = [
        line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
    ]

    def value(name: str, **labels: str) -> float:
        """Sum of the samples of `name` having these labels."""
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(
            float(number)
            for series, number in samples
            if series.split("{", 1)[0] == name and all(w in series for w in wanted)
        )

    assert value("wfa_runs_started_total", workflow="flaky") == 2
    assert value("wfa_runs_finished_total", workflow="flaky", status="failed") == 2
    assert value("wfa_runs_running", workflow="flaky") == 0
    failed = value("wfa_attempts_failed_total", agent="local", error_kind="user", workflow="flaky")
    assert failed == 4
    assert value("wfa_step_duration_seconds_count") == 6
    assert value("wfa_step_queue_wait_seconds_count") == 6
    assert value("wfa_resource_usage_percent", resource="cpu") == 42.0
    assert any(s.startswith('wfa_agent_utilisation{agent="local"') for s, _ in samples)
    assert 'service_name="workflow-automator"' in text
