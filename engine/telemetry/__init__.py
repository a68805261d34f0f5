"""Traces and metrics derived from the event log, live or after the fact.

Spans are a pure fold of a run's events (`spans_for_run`, `SpanBuilder`), so a
trace sent while the run is driven and one rebuilt from the log later are the
same trace. `Observer` is the runtime's listener that feeds the metrics and
starts the trace exporter process (exporter.py), which follows the log and
exports the spans live off the engine's CPU.

Each name is loaded from its module on first use: `wfa show` needs a trace id
(spans.py), not the OpenTelemetry SDK that export.py and observer.py bring in.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.telemetry.export import (
        SpanExport,
        export_now,
        live_export,
        make_exporter,
        to_jaeger_json,
    )
    from engine.telemetry.observer import Observer
    from engine.telemetry.spans import (
        SpanBuilder,
        SpanData,
        SpanEvent,
        spans_for_run,
        trace_id_of,
    )

__all__ = [
    "Observer",
    "SpanBuilder",
    "SpanData",
    "SpanEvent",
    "SpanExport",
    "export_now",
    "live_export",
    "make_exporter",
    "spans_for_run",
    "to_jaeger_json",
    "trace_id_of",
]

_HOME = {
    **dict.fromkeys(
        ("SpanExport", "export_now", "live_export", "make_exporter", "to_jaeger_json"),
        "engine.telemetry.export",
    ),
    "Observer": "engine.telemetry.observer",
    **dict.fromkeys(
        ("SpanBuilder", "SpanData", "SpanEvent", "spans_for_run", "trace_id_of"),
        "engine.telemetry.spans",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine.telemetry' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # loaded once
    return value
