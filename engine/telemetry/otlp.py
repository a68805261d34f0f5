"""OTLP/HTTP for the live path: `SpanData` straight to protobuf bytes, POSTed on one connection.

Runs in the trace exporter process (engine/telemetry/exporter.py). Why not the
SDK's OTLPSpanExporter: it needs `ReadableSpan`s and encodes them through
generic attribute conversion (~55 µs a span); building opentelemetry-proto
message objects costs ~17 µs. This writes the protobuf wire format directly
and keeps the encoded attributes, which repeat across a run's spans (run id,
workflow, agent, step ids), in a bounded cache: a few µs a span, which is CPU
the exporter process leaves to the engine on a small machine. The bytes are
an ExportTraceServiceRequest (tests decode them with opentelemetry-proto in a
real receiver). `wfa traces --export`, which is not hot, uses the SDK exporter.
"""

from __future__ import annotations

import http.client
import logging
import struct
from collections.abc import Sequence
from urllib.parse import urlsplit

from engine.telemetry.spans import AttributeValue, SpanData

log = logging.getLogger("wfa.telemetry")

_CODES = {"unset": 0, "ok": 1, "error": 2}  # Status.StatusCode
_SPAN_KIND_INTERNAL = b"\x30\x01"  # field 6 (kind), varint 1
_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_CACHE_LIMIT = 50_000
_kv_cache: dict[tuple[str, type, AttributeValue], bytes] = {}


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    n = len(body)
    return tag + (bytes((n,)) if n < 0x80 else _varint(n)) + body


def _kv(key: str, value: AttributeValue) -> bytes:
    """A KeyValue message body (key 1, AnyValue 2); cached, attributes repeat a lot."""
    cache_key = (key, type(value), value)
    encoded = _kv_cache.get(cache_key)
    if encoded is None:
        if isinstance(value, bool):
            any_value = b"\x10\x01" if value else b"\x10\x00"  # bool_value = 2
        elif isinstance(value, int):
            any_value = b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int_value = 3
        elif isinstance(value, float):
            any_value = b"\x21" + _double(value)  # double_value = 4
        else:
            any_value = _field(b"\x0a", str(value).encode())  # string_value = 1
        encoded = _field(b"\x0a", key.encode()) + _field(b"\x12", any_value)
        if len(_kv_cache) >= _CACHE_LIMIT:
            _kv_cache.clear()
        _kv_cache[cache_key] = encoded
    return encoded


def _ns(seconds: float) -> bytes:
    return _fixed64(round(seconds * 1e9))


def _span(s: SpanData) -> bytes:
    """A Span message body (opentelemetry/proto/trace/v1/trace.proto field numbers)."""
    parts = [b"\x0a\x10", bytes.fromhex(s.trace_id), b"\x12\x08", bytes.fromhex(s.span_id)]
    if s.parent_id:
        parts += (b"\x22\x08", bytes.fromhex(s.parent_id))
    parts += (
        _field(b"\x2a", s.name.encode()),
        _SPAN_KIND_INTERNAL,
        b"\x39",  # start_time_unix_nano = 7, fixed64
        _ns(s.start),
        b"\x41",  # end_time_unix_nano = 8, fixed64
        _ns(s.end),
    )
    parts += [_field(b"\x4a", _kv(k, v)) for k, v in s.attributes.items()]  # attributes = 9
    if s.open:
        parts.append(_field(b"\x4a", _kv("wfa.open", True)))
    for e in s.events:  # events = 11: time 1 (fixed64), name 2, attributes 3
        body = b"\x09" + _ns(e.at) + _field(b"\x12", e.name.encode())
        body += b"".join(_field(b"\x1a", _kv(k, v)) for k, v in e.attributes.items())
        parts.append(_field(b"\x5a", body))
    status = _field(b"\x12", s.status_message.encode()) if s.status_message else b""  # message 2
    code = _CODES[s.status]
    if code:
        status += b"\x18" + bytes((code,))  # code = 3
    parts.append(_field(b"\x7a", status))  # status = 15
    return b"".join(parts)


def encode_request(spans: Sequence[SpanData], service_name: str) -> bytes:
    """An ExportTraceServiceRequest holding `spans`, serialised."""
    resource = _field(b"\x0a", _kv("service.name", service_name))  # Resource.attributes = 1
    scope = _field(b"\x0a", _field(b"\x0a", b"workflow-automator"))  # ScopeSpans.scope = 1
    scope_spans = scope + b"".join([_field(b"\x12", _span(s)) for s in spans])  # spans = 2
    # ResourceSpans: resource = 1, scope_spans = 2; the request: resource_spans = 1
    resource_spans = _field(b"\x0a", resource) + _field(b"\x12", scope_spans)
    return _field(b"\x0a", resource_spans)


class OtlpHttpSender:
    """POSTs encoded batches to `<endpoint>/v1/traces` on a kept-alive connection.

    Called only from the export thread. One attempt per batch with a short
    timeout: a live trace is not worth stalling for (the log keeps everything,
    and `wfa traces RUN --export` resends any run).
    """

    def __init__(self, url: str, service_name: str, timeout: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port
        self.https = parts.scheme == "https"
        self.path = parts.path or "/v1/traces"
        self.service_name, self.timeout = service_name, timeout
        self._conn: http.client.HTTPConnection | None = None
        self.last_error = ""

    def __call__(self, spans: Sequence[SpanData]) -> bool:
        body = encode_request(spans, self.service_name)
        for _ in range(2):  # a kept-alive connection the server closed: reconnect once
            try:
                conn = self._connection()
                conn.request("POST", self.path, body, {"Content-Type": "application/x-protobuf"})
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                self.last_error = f"{type(exc).__name__}: {exc}"
                if isinstance(exc, ConnectionRefusedError | TimeoutError):
                    return False
                continue
            if 200 <= response.status < 300:
                return True
            self.last_error = f"HTTP {response.status} from {self.host}:{self.port}{self.path}"
            return False
        return False

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = kind(self.host, self.port, timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
