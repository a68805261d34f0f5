"""Traces checked in a real Jaeger: what a user sees after `telemetry.traces: otlp`,
`wfa traces --export` and `wfa traces --format jaeger-json`.

One Jaeger (tests/e2e/jaeger.py) serves the module. Runs go through the real
`wfa` executable and the public Python API; Jaeger's query API is read back
over HTTP, polling with a deadline since Jaeger stores what it receives
asynchronously. Without Go the tests skip locally and fail in CI.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine import Engine
from engine.telemetry import trace_id_of
from tests.e2e.jaeger import JaegerServer, JaegerUnavailable, jaeger_binary
from tests.e2e.test_cli_runs import as_json, cli, write
from tests.e2e.test_cli_validate import wfa
from tests.support import until

pytestmark = pytest.mark.jaeger

SERVICE = "wfa-e2e"

# prepare, then left, right and flaky in parallel (flaky fails its first attempt and
# succeeds on the retry), then broken, which fails for good and fails the run.
WORKFLOW = """
name: traced
steps:
  - id: prepare
    run: ["python3", "-c", "pass"]
  - id: left
    after: [prepare]
    run: ["python3", "-c", "import time; time.sleep(0.2)"]
  - id: right
    after: [prepare]
    run: ["python3", "-c", "import time; time.sleep(0.2)"]
  - id: flaky
    after: [prepare]
    run: ["python3", "-c", "import os, sys; sys.exit(os.environ['WFA_ATTEMPT'] == '1')"]
    retry: {max_attempts: 2, initial_delay: 0.01}
  - id: broken
    after: [left, right, flaky]
    run: ["python3", "-c", "import sys; sys.exit(3)"]
    retry: {max_attempts: 1}
"""

SPANS = {
    "run traced": None,
    **{f"step {s}": "run traced" for s in ("prepare", "left", "right", "flaky", "broken")},
    **{f"attempt {s}#1": f"step {s}" for s in ("prepare", "left", "right", "flaky", "broken")},
    "attempt flaky#2": "step flaky",
}
"""Every span's name and its parent's name."""


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerServer]:
    try:
        binary = jaeger_binary()
    except JaegerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs Jaeger: {exc}")
        pytest.skip(f"no Jaeger: {exc}")
    with JaegerServer(binary, tmp_path_factory.mktemp("jaeger")) as server:
        yield server


def config_file(tmp: Path, otlp_url: str | None = None) -> Path:
    """An engine config; with `otlp_url`, tracing live into it. A busy machine's CPU never
    holds steps back: these tests are about traces, not the resource caps."""
    telemetry = f"  traces: otlp\n  otlp_endpoint: {otlp_url}\n" if otlp_url else ""
    return write(tmp, "wfa.yaml", f"resources:\n  max_cpu_usage: 100\n"
                 f"telemetry:\n  service_name: {SERVICE}\n{telemetry}")  # fmt: skip


@pytest.fixture(scope="module")
def live(jaeger: JaegerServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory and the id of a run traced live into Jaeger through `wfa run`."""
    tmp = tmp_path_factory.mktemp("live")
    config = config_file(tmp, jaeger.otlp_url)
    data = tmp / "data"
    run = as_json(cli(data, "--config", config, "run", write(tmp, "t.yaml", WORKFLOW), "--json"))
    assert run["status"] == "failed"
    return data, run["run_id"]


def spans_by_name(trace: dict[str, Any]) -> dict[str, dict[str, Any]]:
    by_name = {s["operationName"]: s for s in trace["spans"]}
    assert len(by_name) == len(trace["spans"]), "span names repeat"
    return by_name


def shape(trace: dict[str, Any]) -> dict[str, str | None]:
    """Each span's name and its parent's name, from Jaeger's references."""
    names = {s["spanID"]: s["operationName"] for s in trace["spans"]}
    found: dict[str, str | None] = {}
    for span in trace["spans"]:
        parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
        assert len(parents) <= 1
        found[span["operationName"]] = names[parents[0]] if parents else None
    return found


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span["tags"]}


def test_every_jaeger_listener_is_on_loopback(jaeger: JaegerServer) -> None:
    def listening() -> set[tuple[str, int]]:
        found = psutil.Process(jaeger.pid).net_connections(kind="inet")
        return {(c.laddr.ip, c.laddr.port) for c in found if c.status == psutil.CONN_LISTEN}

    until(lambda: {port for _, port in listening()} >= set(jaeger.ports.values()))  # all up
    assert listening() == {("127.0.0.1", port) for port in jaeger.ports.values()}


def test_a_live_traced_run_is_one_trace_in_jaeger(
    jaeger: JaegerServer, live: tuple[Path, str]
) -> None:
    _, run_id = live
    trace = jaeger.trace(trace_id_of(run_id), len(SPANS))
    assert trace["traceID"] == trace_id_of(run_id)
    assert shape(trace) == SPANS
    assert {p["serviceName"] for p in trace["processes"].values()} == {SERVICE}
    spans = spans_by_name(trace)
    assert tags(spans["attempt flaky#1"])["error"] is True
    assert tags(spans["attempt flaky#1"])["wfa.error.kind"] == "user"
    assert tags(spans["attempt broken#1"])["error"] is True
    assert "error" not in tags(spans["attempt flaky#2"])
    assert tags(spans["step flaky"])["wfa.status"] == "succeeded"
    assert tags(spans["step broken"])["wfa.status"] == "failed"
    assert tags(spans["run traced"])["error"] is True
    attempt = tags(spans["attempt flaky#2"])
    assert attempt["wfa.run_id"] == run_id and attempt["wfa.workflow"] == "traced"
    assert (attempt["wfa.step_id"], attempt["wfa.attempt"]) == ("flaky", 2)
    assert attempt["wfa.agent"]
    found = jaeger.get(f"/api/traces?service={SERVICE}&limit=20")
    assert trace_id_of(run_id) in {t["traceID"] for t in found["data"]}


def test_the_trace_id_wfa_prints_is_the_one_jaeger_has(
    jaeger: JaegerServer, live: tuple[Path, str]
) -> None:
    data, run_id = live
    printed = set()
    for command in ("show", "traces"):
        out = cli(data, command, run_id).stdout
        printed.update(re.findall(r"trace ([0-9a-f]{32})", out))
    (trace_id,) = printed
    assert jaeger.trace(trace_id, len(SPANS))["traceID"] == trace_id


def test_an_untraced_run_exported_afterwards_keeps_its_shape_and_times(
    jaeger: JaegerServer, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    with Engine(data_dir=data, config=config_file(tmp_path)) as engine:  # tracing off
        run = engine.submit(write(tmp_path, "t.yaml", WORKFLOW))
        assert run.wait(timeout=60).status == "failed"
    run_id = run.id
    recorded = {s["name"]: s for s in as_json(cli(data, "traces", run_id, "--json"))}
    time.sleep(0.5)  # so that times taken at export could not pass for the run's
    exported_at = time.time()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_url, "OTEL_SERVICE_NAME": SERVICE}
    sent = wfa("--data", data, "traces", run_id, "--export", env=env)
    assert sent.returncode == 0, sent.stderr
    assert f"exported {len(SPANS)} spans of trace {trace_id_of(run_id)}" in sent.stderr
    trace = jaeger.trace(trace_id_of(run_id), len(SPANS))
    assert shape(trace) == SPANS
    for name, span in spans_by_name(trace).items():  # Jaeger keeps µs of the ns we send
        start, end = (round(recorded[name][k] * 1e9) for k in ("start", "end"))
        assert (span["startTime"], span["duration"]) == (start // 1000, (end - start) // 1000)
        assert span["startTime"] < exported_at * 1e6


def test_jaeger_json_output_is_what_jaegers_query_api_returns(
    jaeger: JaegerServer, live: tuple[Path, str]
) -> None:
    data, run_id = live
    stored = jaeger.trace(trace_id_of(run_id), len(SPANS))
    answer = jaeger.get(f"/api/traces/{trace_id_of(run_id)}")
    doc = as_json(cli(data, "--config", data.parent / "wfa.yaml", "traces", run_id,
                      "--format", "jaeger-json"))  # fmt: skip
    (ours,) = doc["data"]
    assert set(ours) == set(stored) and set(doc) == set(answer)
    assert ours["traceID"] == stored["traceID"]
    assert ours["processes"] == stored["processes"]
    assert [p["serviceName"] for p in ours["processes"].values()] == [SERVICE]
    theirs = {s["spanID"]: s for s in stored["spans"]}
    assert {s["spanID"] for s in ours["spans"]} == set(theirs)
    for span in ours["spans"]:  # every field: ids, references, times, tags, logs, processID
        assert span == theirs[span["spanID"]], span["operationName"]
