"""The trace exporter process: follows the event log, folds spans, sends them.

`python -m engine.telemetry.exporter EVENTS_DIR TELEMETRY_JSON START_POSITION`,
started by the driving engine (engine/telemetry/exporter_process.py) when
`telemetry.traces` is `otlp` or `console`. Why a process: building spans
(~7 µs an event) and encoding them (~17 µs a span) are CPU under the GIL; in
the engine's process they cost W2 about a fifth of its throughput.

It opens the engine's event store read-only (LMDB lets several processes read
while one writes), follows it from START_POSITION, feeds each run's events to
that run's `SpanBuilder` and hands the spans it closes to `live_export`. So a
live trace is the same fold of the log as `wfa traces RUN --export`.

Stdin is the engine's pipe: EOF means stop. It then folds what the log holds
up to its last position (the engine has stopped appending run events), sends
it within a bounded time, reports its figures on stderr as one
`STATS {json}` line and exits. Log records go to stderr as `LEVEL message`
lines, which the engine relays to its own logging.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from engine.rules.config import TelemetryConfig
from engine.rules.events import RUN_STREAM_PREFIX, Event
from engine.telemetry.export import SpanExport, live_export
from engine.telemetry.exporter_process import STATS_PREFIX
from engine.telemetry.spans import RUN_END, SpanBuilder, SpanData
from eventstore import EventStore, Recorded

log = logging.getLogger("wfa.telemetry")

DRAIN_SECONDS = 1.5  # after EOF: fold the rest and send it; the engine kills at ~2 s
HARD_EXIT_SECONDS = 3.0
NICENESS = 10  # after EOF, whatever happens (a stuck send, an orphan)


class LogTracer:
    """Folds the records of the whole log, in log order, into per-run span builders.

    A run first seen after its RunSubmitted (it was running when the engine
    started) is caught up from its stream first; the spans that closed before
    are not sent again (`wfa traces RUN --export` sends a whole run).
    """

    def __init__(self, store: EventStore[Any]) -> None:
        self.store = store
        self.builders: dict[str, SpanBuilder] = {}  # stream -> builder of a running run

    def on_record(self, record: Recorded[Any]) -> list[SpanData]:
        stream = record.stream
        if not stream.startswith(RUN_STREAM_PREFIX):
            return []
        event = record.event
        builder = self.builders.get(stream)
        if builder is None:
            builder = self._builder(stream, record)
            if builder is None:
                return []
            self.builders[stream] = builder
        spans = builder.on_events((event,))
        if isinstance(event, RUN_END):
            del self.builders[stream]
        return spans

    def _builder(self, stream: str, record: Recorded[Any]) -> SpanBuilder | None:
        if type(record.event).__name__ == "RunSubmitted":
            return SpanBuilder.for_submitted(record.event)
        earlier = [r.event for r in self.store.read_stream(stream) if r.position < record.position]
        if not earlier or type(earlier[0]).__name__ != "RunSubmitted":
            return None
        builder = SpanBuilder.for_submitted(earlier[0])
        builder.on_events(earlier[1:])
        return builder


def run(events_dir: str, telemetry: TelemetryConfig, start: int, stop: threading.Event) -> None:
    """Follow the log from `start` until `stop`, then drain to its end and flush."""
    export = live_export(
        telemetry.traces.value, telemetry.otlp_endpoint, telemetry.service_name, block=True
    )
    if export is None:
        return
    store: EventStore[Any] = EventStore.open(events_dir, Event, create=False)
    tracer = LogTracer(store)
    position = start
    try:
        for record in store.follow(start, stop=stop):
            _send(export, tracer, record)
            position = record.position + 1
        deadline = time.monotonic() + DRAIN_SECONDS
        for record in store.read_all(position, store.last_position()):
            _send(export, tracer, record)
            if time.monotonic() > deadline:
                log.warning("traces: shutting down before every span was folded")
                break
        export.close(max(0.1, deadline - time.monotonic()))
    finally:
        store.close()
        figures = {"exported": export.exported, "failed": export.failed, "dropped": export.dropped}
        sys.stderr.write(STATS_PREFIX + msgspec.json.encode(figures).decode() + "\n")
        sys.stderr.flush()


def _send(export: SpanExport, tracer: LogTracer, record: Recorded[Any]) -> None:
    try:
        spans = tracer.on_record(record)
    except Exception:  # a bug in span folding must not end exporting
        log.exception("traces: building spans failed at log position %d", record.position)
        return
    if spans:
        export.submit(spans)


def _stop_at_eof(stop: threading.Event) -> None:
    """The engine closes our stdin to stop us (or dies, which closes it too)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    stop.set()
    # Never outlive the engine by more than a moment, whatever a send is doing.
    timer = threading.Timer(HARD_EXIT_SECONDS, os._exit, args=(3,))
    timer.daemon = True
    timer.start()


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python -m engine.telemetry.exporter EVENTS_DIR TELEMETRY START\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    with contextlib.suppress(OSError):  # on a busy machine the engine's runs come first
        os.nice(NICENESS)
    events_dir, config, start = argv
    telemetry = msgspec.json.decode(config, type=TelemetryConfig)
    stop = threading.Event()
    threading.Thread(target=_stop_at_eof, args=(stop,), name="wfa-stdin", daemon=True).start()
    run(events_dir, telemetry, int(start), stop)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
