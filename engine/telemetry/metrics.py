"""OpenTelemetry metrics folded from a run's events, optionally served for Prometheus.

The meter provider is our own instance, never the process-global one: a
library must not configure its host's telemetry. With `prometheus_port` set,
the Prometheus reader writes into a private registry served by
prometheus_client on 127.0.0.1 only (the figures name workflows and steps;
they are not for the network at large).

Instruments (OTel names; Prometheus turns dots into underscores and adds units
and `_total`): `wfa.runs.started`, `wfa.runs.finished{status}`,
`wfa.runs.running`, `wfa.steps.started`, `wfa.steps.finished{status,
error_kind}`, `wfa.attempts.started{agent}`, `wfa.attempts.failed{agent,
error_kind}`, histograms `wfa.step.duration` and `wfa.step.queue_wait`
(seconds), `wfa.agent.busy{agent}`, gauges `wfa.agent.utilisation{agent}`
(busy / capacity) and `wfa.resource.usage{resource}` (percent, fed through
`set_resource_usage` by whoever samples resources). Every series carries
`workflow` where it has one.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource

from engine.rules import events as ev
from engine.rules.config import EngineConfig


def agent_capacities(config: EngineConfig) -> dict[str, int]:
    """Agent name -> capacity, as the runtime makes them (actors.runtime.configured_agents):
    the `agents:` of the config, else `agent_pool_size` generic agents of capacity 1."""
    if config.agents is not None:
        return {a.name: a.capacity for a in config.agents}
    return {f"agent-{n}": 1 for n in range(1, config.resources.agent_pool_size + 1)}


class _RunMemory:
    """What a run's metrics need to remember between batches: when steps got ready/started."""

    __slots__ = ("agents", "ready", "started", "workflow")

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.ready: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.agents: dict[str, str] = {}


class EngineMetrics:
    """The instruments, and `on_events` which folds one run's batch into them.

    `on_events` runs on actor threads: instruments are thread-safe, and each
    run's memory is touched only by that run's thread.
    """

    def __init__(
        self,
        config: EngineConfig,
        readers: Sequence[MetricReader] = (),
        agent_capacity: dict[str, int] | None = None,
    ) -> None:
        self.capacity = agent_capacity or agent_capacities(config)
        self.provider = MeterProvider(
            metric_readers=list(readers),
            resource=Resource.create({"service.name": config.telemetry.service_name}),
        )
        meter = self.provider.get_meter("workflow-automator")
        self._runs: dict[str, _RunMemory] = {}
        self._lock = threading.Lock()
        self._busy: dict[str, int] = dict.fromkeys(self.capacity, 0)
        self._resources: dict[str, float] = {}
        self.runs_started = meter.create_counter("wfa.runs.started", "{run}", "runs admitted")
        self.runs_finished = meter.create_counter("wfa.runs.finished", "{run}", "runs ended")
        self.runs_running = meter.create_up_down_counter("wfa.runs.running", "{run}")
        self.steps_started = meter.create_counter("wfa.steps.started", "{step}")
        self.steps_finished = meter.create_counter("wfa.steps.finished", "{step}")
        self.attempts_started = meter.create_counter("wfa.attempts.started", "{attempt}")
        self.attempts_failed = meter.create_counter("wfa.attempts.failed", "{attempt}")
        self.duration = meter.create_histogram(
            "wfa.step.duration", "s", "attempt start to its outcome"
        )
        self.queue_wait = meter.create_histogram(
            "wfa.step.queue_wait", "s", "step ready to its attempt starting on an agent"
        )
        self.agent_busy = meter.create_up_down_counter("wfa.agent.busy", "{attempt}")
        meter.create_observable_gauge(
            "wfa.agent.utilisation", [self._utilisation], "1", "busy slots / capacity"
        )
        meter.create_observable_gauge(
            "wfa.resource.usage", [self._resource_usage], "%", "resource usage"
        )

    # -- hooks ---------------------------------------------------------------

    def set_resource_usage(self, resource: str, percent: float) -> None:
        """Record a sampled resource use (cpu, memory, storage, network), in percent."""
        self._resources[resource] = percent

    def _utilisation(self, options: CallbackOptions) -> Iterable[Observation]:
        for agent, capacity in self.capacity.items():
            busy = self._busy.get(agent, 0)
            yield Observation(busy / capacity if capacity else 0.0, {"agent": agent})

    def _resource_usage(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, value in list(self._resources.items()):
            yield Observation(value, {"resource": name})

    # -- folding -------------------------------------------------------------

    def on_events(self, run_id: str, workflow: str, batch: Iterable[Any]) -> None:
        run = self._runs.get(run_id)
        if run is None:
            with self._lock:
                run = self._runs.setdefault(run_id, _RunMemory(workflow))
        wf = {"workflow": workflow}
        for event in batch:
            match event:
                case ev.RunStarted():
                    self.runs_started.add(1, wf)
                    self.runs_running.add(1, wf)
                case ev.RunSucceeded() | ev.RunFailed() | ev.RunCancelled() | ev.RunTimedOut():
                    status = _RUN_STATUS[type(event)]
                    self.runs_finished.add(1, {**wf, "status": status})
                    self.runs_running.add(-1, wf)
                    for step_id in list(run.started):
                        self._free(run, step_id)
                    with self._lock:
                        self._runs.pop(run_id, None)
                case ev.StepReady():
                    run.ready[event.step_id] = event.at
                case ev.AttemptStarted():
                    agent = {"agent": event.agent}
                    if event.attempt == 1:
                        self.steps_started.add(1, wf)
                    self.attempts_started.add(1, {**wf, **agent})
                    ready = run.ready.pop(event.step_id, None)
                    if ready is not None:
                        self.queue_wait.record(max(0.0, event.at - ready), {**wf, **agent})
                    run.started[event.step_id] = event.at
                    run.agents[event.step_id] = event.agent
                    self._busy[event.agent] = self._busy.get(event.agent, 0) + 1
                    self.agent_busy.add(1, agent)
                case ev.StepSucceeded():
                    self._attempt_done(run, event.step_id, event.at, "succeeded", None)
                    self.steps_finished.add(1, {**wf, "status": "succeeded", "error_kind": ""})
                case ev.AttemptFailed():
                    kind = str(event.kind)
                    on = run.agents.get(event.step_id, "")
                    self.attempts_failed.add(1, {**wf, "agent": on, "error_kind": kind})
                    self._attempt_done(run, event.step_id, event.at, "failed", kind)
                case ev.StepFailed():
                    kind = str(event.kind)
                    self.steps_finished.add(1, {**wf, "status": "failed", "error_kind": kind})
                case ev.StepSkipped() | ev.StepSkippedManually():
                    self.steps_finished.add(1, {**wf, "status": "skipped", "error_kind": ""})
                case ev.StepCacheHit():
                    self.steps_finished.add(1, {**wf, "status": "cached", "error_kind": ""})
                case ev.StepCancelled():
                    self._free(run, event.step_id)
                    self.steps_finished.add(1, {**wf, "status": "cancelled", "error_kind": ""})

    def _attempt_done(
        self, run: _RunMemory, step_id: str, at: float, outcome: str, kind: str | None
    ) -> None:
        started = run.started.get(step_id)
        agent = run.agents.get(step_id, "")
        if started is not None:
            attributes = {"workflow": run.workflow, "step": step_id, "agent": agent}
            attributes["outcome"] = outcome
            self.duration.record(max(0.0, at - started), attributes)
        self._free(run, step_id)

    def _free(self, run: _RunMemory, step_id: str) -> None:
        if run.started.pop(step_id, None) is None:
            return
        agent = run.agents.pop(step_id, "")
        self._busy[agent] = max(0, self._busy.get(agent, 0) - 1)
        self.agent_busy.add(-1, {"agent": agent})

    def shutdown(self) -> None:
        self.provider.shutdown(timeout_millis=2000)


_RUN_STATUS = {
    ev.RunSucceeded: "succeeded",
    ev.RunFailed: "failed",
    ev.RunCancelled: "cancelled",
    ev.RunTimedOut: "timed_out",
}


class PrometheusEndpoint:
    """/metrics on 127.0.0.1:`port`, from a Prometheus reader with a private registry."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        self.registry = CollectorRegistry()
        self.reader = PrometheusMetricReader(scope_info_enabled=False, registry=self.registry)
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = self._server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
