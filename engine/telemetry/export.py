"""Sending spans out: OTLP/HTTP or the console, off the hot path, and Jaeger's JSON form.

Live export runs in the trace exporter process (engine/telemetry/exporter.py),
never in the engine's. `SpanExport.submit` appends to a bounded queue (with
`block`, it waits for room: the exporter process reads a durable log, so it
can wait rather than drop); one daemon thread sends
batches: for `otlp` encoded straight to OTLP protobuf (engine/telemetry/otlp.py,
for speed), for `console` and `wfa traces --export` as opentelemetry-sdk
`ReadableSpan`s (keeping the original start and end times, which the SDK's
tracer cannot do) through the SDK's exporters. So a collector that is slow
or absent never stalls an actor thread: the queue drops what it cannot hold,
a failure is logged once (until an export succeeds again), each export
attempt is bounded to about a second, and `close()` waits at most
`SHUTDOWN_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event as SdkEvent
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from engine.telemetry.spans import SpanData

log = logging.getLogger("wfa.telemetry")
log.addHandler(logging.NullHandler())

SHUTDOWN_SECONDS = 2.0
EXPORT_TIMEOUT_SECONDS = 1.0  # one export request, retries included
QUEUE_LIMIT = 20_000  # spans waiting for export; beyond it new spans are dropped
BATCH_SIZE = 512
BATCH_DELAY_SECONDS = 0.5
SCOPE = InstrumentationScope("workflow-automator")
_STATUS = {"unset": StatusCode.UNSET, "ok": StatusCode.OK, "error": StatusCode.ERROR}
_OTLP_LOGGER = "opentelemetry.exporter.otlp.proto.http.trace_exporter"


def traces_url(endpoint: str) -> str:
    """`http://host:4318` (the OTLP base, as in OTEL_EXPORTER_OTLP_ENDPOINT) -> .../v1/traces."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def resource_for(service_name: str) -> Resource:
    return Resource.create({"service.name": service_name})


def to_readable(span: SpanData, resource: Resource) -> ReadableSpan:
    """The SDK form of a span, with its original times (ns) and derived ids."""
    trace_id = int(span.trace_id, 16)
    flags = TraceFlags(TraceFlags.SAMPLED)
    context = SpanContext(trace_id, int(span.span_id, 16), is_remote=False, trace_flags=flags)
    parent = (
        SpanContext(trace_id, int(span.parent_id, 16), is_remote=False, trace_flags=flags)
        if span.parent_id
        else None
    )
    attributes: dict[str, Any] = dict(span.attributes)
    if span.open:
        attributes["wfa.open"] = True
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        events=[SdkEvent(e.name, dict(e.attributes), timestamp=_ns(e.at)) for e in span.events],
        kind=SpanKind.INTERNAL,
        status=Status(_STATUS[span.status], span.status_message or None)
        if span.status == "error"
        else Status(_STATUS[span.status]),
        start_time=_ns(span.start),
        end_time=_ns(span.end),
        instrumentation_scope=SCOPE,
    )


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def make_exporter(kind: str, endpoint: str) -> SpanExporter | None:
    """The SDK exporter for `telemetry.traces` (`otlp` | `console`); None for `none`."""
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        logging.getLogger(_OTLP_LOGGER).addFilter(_ONCE)
        return OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=EXPORT_TIMEOUT_SECONDS)
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(service_name=None)
    return None


class _OnceFilter(logging.Filter):
    """Lets the exporter's first failure message through, then silence until a success."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if self.failing:
            return False
        self.failing = True
        return True


_ONCE = _OnceFilter()


class SpanExport:
    """A queue and one exporting thread in front of `send(batch) -> ok`.

    `submit` never blocks on I/O; with `block` it waits while QUEUE_LIMIT
    spans are queued (until the sender made room or `close`), else it drops.
    Spans are sent in batches of up to BATCH_SIZE, at least every
    BATCH_DELAY_SECONDS. `describe` says why the last send failed; `stop`
    releases the sender.
    """

    def __init__(
        self,
        send: Callable[[Sequence[SpanData]], bool],
        describe: Callable[[], str] = lambda: "",
        stop: Callable[[], None] = lambda: None,
        *,
        block: bool = False,
    ) -> None:
        self._send, self._describe, self._stop = send, describe, stop
        self.block = block
        self.exported = 0
        self.dropped = 0
        self.failed = 0
        self._queue: deque[SpanData] = deque()
        lock = threading.RLock()
        self._wake = threading.Condition(lock)  # the sender waits for spans
        self._room = threading.Condition(lock)  # a blocking submit waits for room
        self._closing = False
        self._failing = False
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="wfa-span-export", daemon=True)
        self._thread.start()

    def submit(self, spans: Iterable[SpanData]) -> None:
        """Queue spans for export (any thread; never blocks on the network)."""
        with self._wake:
            if self._closing:
                return
            if self.block:
                while len(self._queue) >= QUEUE_LIMIT and not self._closing:
                    self._wake.notify()
                    self._room.wait(BATCH_DELAY_SECONDS)
            for span in spans:
                if len(self._queue) >= QUEUE_LIMIT:
                    self.dropped += 1
                else:
                    self._queue.append(span)
            self._idle.clear()
            if len(self._queue) >= BATCH_SIZE:
                self._wake.notify()

    def flush(self, timeout: float = SHUTDOWN_SECONDS) -> bool:
        """Wait until everything queued so far was handed to the sender."""
        with self._wake:
            self._wake.notify()
        return self._idle.wait(timeout)

    def close(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Send what is queued, within `timeout` seconds; then stop the sender."""
        with self._wake:
            self._closing = True
            self._wake.notify()
            self._room.notify_all()
        self._thread.join(timeout)
        try:
            self._stop()
        except Exception:  # pragma: no cover - a sender's own bug
            log.debug("span sender shutdown failed", exc_info=True)

    def _run(self) -> None:
        """The export thread: wait for a full batch (or the delay), send it."""
        while True:
            with self._wake:
                if not self._queue:
                    self._idle.set()
                    if self._closing:
                        return
                    self._wake.wait(BATCH_DELAY_SECONDS)
                elif len(self._queue) < BATCH_SIZE and not self._closing:
                    self._wake.wait(BATCH_DELAY_SECONDS)
                batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
                self._room.notify_all()
            if batch:
                self._export(batch)

    def _export(self, batch: Sequence[SpanData]) -> None:
        try:
            ok = self._send(batch)
            error = self._describe()
        except Exception as exc:  # a sender must not kill the thread
            log.debug("span export raised", exc_info=True)
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            self.exported += len(batch)
            self._failing = _ONCE.failing = False
            return
        self.failed += len(batch)
        if not self._failing:
            self._failing = True
            log.warning(
                "traces: export failed (%s); %d spans lost, further failures are not logged "
                "until an export succeeds",
                error or "see the exporter's message",
                len(batch),
            )


def live_export(
    kind: str, endpoint: str, service_name: str, *, block: bool = False
) -> SpanExport | None:
    """The live exporter for `telemetry.traces`; None for `none`. `block`: see SpanExport."""
    if kind == "otlp":
        from engine.telemetry.otlp import OtlpHttpSender

        sender = OtlpHttpSender(traces_url(endpoint), service_name, EXPORT_TIMEOUT_SECONDS)
        return SpanExport(sender, lambda: sender.last_error, sender.close, block=block)
    exporter = make_exporter(kind, endpoint)
    if exporter is None:
        return None
    resource = resource_for(service_name)
    sdk = exporter

    def send(batch: Sequence[SpanData]) -> bool:
        result = sdk.export([to_readable(s, resource) for s in batch])
        return result is SpanExportResult.SUCCESS

    return SpanExport(send, stop=sdk.shutdown, block=block)


def export_now(spans: Sequence[SpanData], exporter: SpanExporter, service_name: str) -> bool:
    """Export spans synchronously (`wfa traces --export`); True on success."""
    resource = resource_for(service_name)
    try:
        result = exporter.export([to_readable(s, resource) for s in spans])
    finally:
        exporter.shutdown()
    return result is SpanExportResult.SUCCESS


# ---- Jaeger's query-API JSON (what its UI loads from a file) ------------------------------


def _tag(key: str, value: Any) -> dict[str, Any]:
    kind = (
        "bool"
        if isinstance(value, bool)
        else "int64"
        if isinstance(value, int)
        else "float64"
        if isinstance(value, float)
        else "string"
    )
    return {"key": key, "type": kind, "value": value if kind != "string" else str(value)}


def _us(seconds: float) -> int:
    """Microseconds as Jaeger stores them: the OTLP nanoseconds we send, truncated."""
    return _ns(seconds) // 1000


def to_jaeger_json(spans: Sequence[SpanData], service_name: str) -> dict[str, Any]:
    """`{"data": [trace...]}` as Jaeger's /api/traces returns it; one trace per trace id.

    Field for field what Jaeger answers for the spans we send it over OTLP
    (tests/e2e/test_jaeger.py compares the two): the tags it derives from the
    scope, kind and status, sorted by key; log fields `event` first, then
    sorted; times in microseconds truncated from the nanoseconds on the wire.
    """
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        tags = {k: _tag(k, v) for k, v in span.attributes.items()}
        tags["otel.scope.name"] = _tag("otel.scope.name", SCOPE.name)
        tags["span.kind"] = _tag("span.kind", "internal")
        if span.status == "error":
            tags["error"] = _tag("error", True)
            tags["otel.status_code"] = _tag("otel.status_code", "ERROR")
            if span.status_message:
                tags["otel.status_description"] = _tag(
                    "otel.status_description", span.status_message
                )
        elif span.status == "ok":
            tags["otel.status_code"] = _tag("otel.status_code", "OK")
        if span.open:
            tags["wfa.open"] = _tag("wfa.open", True)
        references = (
            [{"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_id}]
            if span.parent_id
            else []
        )
        start = _ns(span.start)
        traces.setdefault(span.trace_id, []).append(
            {
                "traceID": span.trace_id,
                "spanID": span.span_id,
                "operationName": span.name,
                "references": references,
                "startTime": start // 1000,
                "duration": max(0, _ns(span.end) - start) // 1000,
                "tags": [tags[k] for k in sorted(tags)],
                "logs": [
                    {
                        "timestamp": _us(e.at),
                        "fields": [_tag("event", e.name)]
                        + [_tag(k, e.attributes[k]) for k in sorted(e.attributes)],
                    }
                    for e in span.events
                ],
                "processID": "p1",
                "warnings": None,
            }
        )
    process = {"serviceName": service_name, "tags": []}
    return {
        "data": [
            {"traceID": tid, "spans": found, "processes": {"p1": process}, "warnings": None}
            for tid, found in traces.items()
        ],
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
