"""The live hook: the runtime's listener, feeding spans to the exporter and metrics.

`Runtime(store, config, data_dir, listener=observer.on_batch)` calls `on_batch`
on a run's workflow-actor thread after every durable batch. It must be cheap:
with `traces: none` and no `prometheus_port` it returns at once; otherwise it
folds the batch into the metrics and queues it for the export thread, which
folds it into the run's `SpanBuilder` and sends the spans it closed. Nothing
here blocks on the network.

A run that was already running when this process started (recovered after a
crash) is picked up from its current state: its spans from then on are live;
`wfa traces RUN --export` sends the whole trace from the log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import partial
from typing import Any

from opentelemetry.sdk.metrics.export import MetricReader

from engine.config import EngineConfig
from engine.telemetry.export import live_export
from engine.telemetry.metrics import EngineMetrics, PrometheusEndpoint
from engine.telemetry.spans import RUN_END, SpanBuilder

log = logging.getLogger("wfa.telemetry")
log.addHandler(logging.NullHandler())


class Observer:
    """Live traces and metrics of the runs a runtime drives; `close()` when done.

    `metric_readers` adds readers (tests use an in-memory one); the Prometheus
    endpoint is started here when `telemetry.prometheus_port` is set, and
    `metrics` is None when nothing would read them.
    """

    def __init__(self, config: EngineConfig, metric_readers: Sequence[MetricReader] = ()) -> None:
        telemetry = config.telemetry
        self.service_name = telemetry.service_name
        self.export = live_export(
            telemetry.traces.value, telemetry.otlp_endpoint, self.service_name
        )
        self.prometheus = (
            PrometheusEndpoint(telemetry.prometheus_port)
            if telemetry.prometheus_port is not None
            else None
        )
        readers = list(metric_readers)
        if self.prometheus is not None:
            readers.append(self.prometheus.reader)
        self.metrics = EngineMetrics(config, readers) if readers else None
        self._builders: dict[str, SpanBuilder] = {}
        self._lock = threading.Lock()
        self.enabled = self.export is not None or self.metrics is not None

    def on_batch(self, run_id: str, state: Any, batch: list[Any]) -> None:
        """Runtime listener (a run's actor thread, after each durable batch); never blocks."""
        if not self.enabled:
            return
        workflow: str = state.spec.name
        if self.metrics is not None:
            self.metrics.on_events(run_id, workflow, batch)
        if self.export is None:
            return
        builder = self._builders.get(run_id)
        if builder is None:
            builder = SpanBuilder(run_id, workflow, state.submitted_at, state.parent_run_id)
            with self._lock:
                self._builders[run_id] = builder
        if any(isinstance(e, RUN_END) for e in batch):
            with self._lock:
                self._builders.pop(run_id, None)
        # Folding happens on the export thread, off the run's critical path; a run's
        # batches stay in order there (one queue, one thread).
        self.export.submit_work(partial(builder.on_events, batch))

    def set_resource_usage(self, resource: str, percent: float) -> None:
        """The resource sampler's hook: record a use in percent (cpu, memory, ...)."""
        if self.metrics is not None:
            self.metrics.set_resource_usage(resource, percent)

    def close(self) -> None:
        """Flush spans (at most ~2 s), stop the metrics and the /metrics endpoint."""
        if self.export is not None:
            self.export.close()
        if self.metrics is not None:
            self.metrics.shutdown()
        if self.prometheus is not None:
            self.prometheus.close()
