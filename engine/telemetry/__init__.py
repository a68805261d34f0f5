"""Traces and metrics derived from the event log, live or after the fact.

Spans are a pure fold of a run's events (`spans_for_run`, `SpanBuilder`), so a
trace sent while the run is driven and one rebuilt from the log later are the
same trace. `Observer` is the runtime's listener that feeds the metrics and
starts the trace exporter process (exporter.py), which follows the log and
exports the spans live off the engine's CPU.

Only the spans are re-exported here: `wfa show` needs a trace id, not the
OpenTelemetry SDK, so the exporters (export.py) and the `Observer`
(observer.py) are imported from their own modules, by what starts them.
"""

from __future__ import annotations

from engine.telemetry.spans import SpanBuilder, SpanData, SpanEvent, spans_for_run, trace_id_of

__all__ = ["SpanBuilder", "SpanData", "SpanEvent", "spans_for_run", "trace_id_of"]
