"""The live hook: the runtime's listener for metrics, and the live trace exporter's owner.

`Runtime(store, config, data_dir, listener=observer.on_batch)` calls `on_batch`
on a run's workflow-actor thread after every durable batch. It must be cheap:
with no metric reader it returns at once; otherwise it folds the batch into
the metrics (counters). Spans are not built here: with `traces: otlp` or
`console`, the Observer starts the trace exporter process
(engine/telemetry/exporter_process.py), which follows the event log from
`start_position` and builds and sends the spans with its own CPU, not the
engine's. A run that was already running when the engine started (recovered
after a crash) gets its spans from then on; `wfa traces RUN --export` sends
the whole trace from the log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader

from engine.rules.config import EngineConfig, TraceExport
from engine.telemetry.exporter_process import ExporterProcess
from engine.telemetry.metrics import EngineMetrics, PrometheusEndpoint

log = logging.getLogger("wfa.telemetry")
log.addHandler(logging.NullHandler())


class Observer:
    """Live metrics and traces of the runs a runtime drives; `close()` when done.

    `metric_readers` adds readers (tests use an in-memory one); the Prometheus
    endpoint is started here when `telemetry.prometheus_port` is set, and
    `metrics` is None when nothing would read them. Live traces need the event
    log: `events_dir` and the position the engine started at; `traces` is the
    exporter process, None with `traces: none`.
    """

    def __init__(
        self,
        config: EngineConfig,
        metric_readers: Sequence[MetricReader] = (),
        *,
        events_dir: str | os.PathLike[str] | None = None,
        start_position: int = 1,
    ) -> None:
        telemetry = config.telemetry
        self.service_name = telemetry.service_name
        tracing = telemetry.traces is not TraceExport.NONE
        if tracing and events_dir is None:
            raise ValueError("live traces follow the event log: pass events_dir")
        self.prometheus = (
            PrometheusEndpoint(telemetry.prometheus_port)
            if telemetry.prometheus_port is not None
            else None
        )
        readers = list(metric_readers)
        if self.prometheus is not None:
            readers.append(self.prometheus.reader)
        self.metrics = EngineMetrics(config, readers) if readers else None
        # Last: nothing after it can fail and leave the process behind.
        self.traces = (
            ExporterProcess(events_dir, telemetry, start_position)
            if tracing and events_dir is not None
            else None
        )

    def on_batch(self, run_id: str, state: Any, batch: list[Any]) -> None:
        """Runtime listener (a run's actor thread, after each durable batch); never blocks."""
        if self.metrics is not None:
            self.metrics.on_events(run_id, state.spec.name, batch)

    def set_resource_usage(self, resource: str, percent: float) -> None:
        """The resource sampler's hook: record a use in percent (cpu, memory, ...)."""
        if self.metrics is not None:
            self.metrics.set_resource_usage(resource, percent)

    def close(self) -> None:
        """Stop the trace exporter (at most ~2 s), the metrics and the /metrics endpoint."""
        if self.traces is not None:
            self.traces.close()
        if self.metrics is not None:
            self.metrics.shutdown()
        if self.prometheus is not None:
            self.prometheus.close()
