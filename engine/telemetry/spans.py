"""A run's trace derived from its events: pure, so live and exported spans are identical.

One trace per run. Ids are hashes of what a span is about, never random: the
trace id is the first 16 bytes of sha256(run id), a step span's id hashes (run
id, step id, how often the step was reopened by a manual retry), an attempt's
hashes (run id, step id, attempt). So the spans `SpanBuilder` emits while a run
is driven and the ones `spans_for_run` rebuilds from the log later have the
same ids, parents, times and attributes, and Jaeger merges rather than doubles
them.

Shape: a root span per run (submitted .. ended), a child per step (first event
about it .. its terminal event), a grandchild per attempt (AttemptStarted ..
StepSucceeded / AttemptFailed); retries, fallbacks, pauses, approvals and cache
hits are span events; failures set status ERROR with the kind and message.
Times are the events' `at` (unix seconds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from engine.rules import events as ev

SpanKind = Literal["run", "step", "attempt"]
Status = Literal["unset", "ok", "error"]
AttributeValue = str | int | float | bool


class SpanEvent(msgspec.Struct, frozen=True):
    """Something that happened inside a span (a retry, a fallback, an approval, ...)."""

    name: str
    at: float
    attributes: dict[str, AttributeValue] = {}


class SpanData(msgspec.Struct, frozen=True, kw_only=True):
    """One finished (or, when `open`, still running) span; ids are lowercase hex."""

    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_id: str | None
    kind: SpanKind
    name: str
    start: float
    end: float
    status: Status = "unset"
    status_message: str = ""
    attributes: dict[str, AttributeValue] = {}
    events: tuple[SpanEvent, ...] = ()
    open: bool = False  # still running when the spans were taken: `end` is "now"


def trace_id_of(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[:32]


def child_span_id(link: ev.ChildOf) -> str:
    """The span a child run's root span hangs under: the attempt of the step that
    started it (attempt spans hash run id, step id and attempt; see the docstring)."""
    return span_id_of(link.run_id, link.step_id, "attempt", link.attempt)


def span_id_of(*parts: object) -> str:
    """A 64-bit span id from what the span is about; never all zeros (invalid in OTLP)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]
    return digest if digest != "0" * 16 else "0" * 15 + "1"


class _Open:
    """A span being built; mutable, owned by one SpanBuilder."""

    __slots__ = (
        "attributes",
        "end",
        "events",
        "kind",
        "name",
        "parent",
        "span_id",
        "start",
        "status",
        "status_message",
    )

    def __init__(
        self, kind: SpanKind, name: str, span_id: str, parent: str | None, start: float
    ) -> None:
        self.kind, self.name, self.span_id, self.parent = kind, name, span_id, parent
        self.start = start
        self.end: float | None = None
        self.status: Status = "unset"
        self.status_message = ""
        self.attributes: dict[str, AttributeValue] = {}
        self.events: list[SpanEvent] = []

    def freeze(self, trace_id: str, now: float | None = None) -> SpanData:
        end = self.end if self.end is not None else max(now or self.start, self.start)
        return SpanData(
            trace_id=trace_id,
            span_id=self.span_id,
            parent_id=self.parent,
            kind=self.kind,
            name=self.name,
            start=self.start,
            end=end,
            status=self.status,
            status_message=self.status_message,
            attributes=dict(self.attributes),
            events=tuple(self.events),
            open=self.end is None,
        )


RUN_END = (ev.RunSucceeded, ev.RunFailed, ev.RunCancelled, ev.RunTimedOut)


class SpanBuilder:
    """Folds one run's events into spans; `on_events` returns the spans each batch closed.

    Used live (one builder per run, fed every durable batch on the run's actor
    thread) and after the fact by `spans_for_run`. Not thread-safe: a run's
    batches arrive in order from one thread.
    """

    def __init__(
        self,
        run_id: str,
        workflow: str,
        submitted_at: float,
        parent_run_id: str | None = None,
        child_of: ev.ChildOf | None = None,
    ) -> None:
        self.run_id, self.workflow = run_id, workflow
        # a child run's spans live in its top-most parent's trace, under the attempt
        # span of the step that started it
        self.trace_id = trace_id_of(child_of.trace_run_id if child_of else run_id)
        up = child_span_id(child_of) if child_of else None
        self.root = _Open("run", f"run {workflow}", span_id_of(run_id, "run"), up, submitted_at)
        self.root.attributes.update({"wfa.run_id": run_id, "wfa.workflow": workflow})
        if child_of:
            self.root.attributes["wfa.parent_run_id"] = child_of.run_id
            self.root.attributes["wfa.parent_step_id"] = child_of.step_id
        if parent_run_id:
            self.root.attributes["wfa.parent_run_id"] = parent_run_id
        self.steps: dict[str, _Open] = {}  # open step spans
        self.attempts: dict[str, _Open] = {}  # step id -> its open attempt span
        self.generation: dict[str, int] = {}  # step id -> times reopened
        self.closed: list[_Open] = []
        self.last_at = submitted_at
        self.ended = False

    @classmethod
    def for_submitted(cls, submitted: ev.RunSubmitted) -> SpanBuilder:
        return cls(
            submitted.run_id,
            submitted.spec.name,
            submitted.at,
            submitted.parent_run_id,
            submitted.child_of,
        )

    # -- folding -------------------------------------------------------------

    def on_events(self, batch: Iterable[Any]) -> list[SpanData]:
        """Fold a batch of this run's events; the spans it closed, children first."""
        self.closed = []
        for event in batch:
            self._fold(event)
        done = [span.freeze(self.trace_id) for span in self.closed]
        self.closed = []
        return done

    def open_spans(self, now: float | None = None) -> list[SpanData]:
        """Spans still open, ending at `now` (default: the last event's time), root first."""
        at = self.last_at if now is None else now
        spans = [] if self.ended else [self.root.freeze(self.trace_id, at)]
        spans += [s.freeze(self.trace_id, at) for s in self.steps.values()]
        spans += [s.freeze(self.trace_id, at) for s in self.attempts.values()]
        return spans

    def _fold(self, event: Any) -> None:
        at: float = event.at
        self.last_at = max(self.last_at, at)
        step_id: str | None = getattr(event, "step_id", None)
        if step_id is None:
            self._run_event(event, at)
            return
        match event:
            case ev.AttemptStarted():
                step = self._step(step_id, at)
                span = _Open(
                    "attempt",
                    f"attempt {step_id}#{event.attempt}",
                    span_id_of(self.run_id, step_id, "attempt", event.attempt),
                    step.span_id,
                    at,
                )
                span.attributes.update(self._ids(step_id))
                span.attributes.update({"wfa.attempt": event.attempt, "wfa.agent": event.agent})
                self.attempts[step_id] = span
                step.attributes["wfa.agent"] = event.agent
                step.attributes["wfa.attempts"] = event.attempt
            case ev.ChildRunSubmitted():  # the attempt is the child run: its span's parent
                step = self._step(step_id, at)
                span = _Open(
                    "attempt",
                    f"attempt {step_id}#{event.attempt}",
                    span_id_of(self.run_id, step_id, "attempt", event.attempt),
                    step.span_id,
                    at,
                )
                span.attributes.update(self._ids(step_id))
                span.attributes.update(
                    {"wfa.attempt": event.attempt, "wfa.child_run_id": event.run_id}
                )
                self.attempts[step_id] = span
                step.attributes["wfa.attempts"] = event.attempt
            case ev.StepSucceeded():
                self._end_attempt(step_id, at, "ok", "")
                self._end_step(step_id, at, "ok", "", "succeeded")
            case ev.AttemptFailed():
                kind = str(event.kind)
                attempt = self.attempts.get(step_id)
                if attempt is not None:
                    attempt.attributes["wfa.error.kind"] = kind
                self._end_attempt(step_id, at, "error", f"{kind}: {event.message}")
            case ev.StepFailed():
                self._end_attempt(step_id, at, "error", f"{event.kind}: {event.message}")
                step = self._step(step_id, at)
                step.attributes["wfa.error.kind"] = str(event.kind)
                self._end_step(step_id, at, "error", f"{event.kind}: {event.message}", "failed")
            case ev.StepSkipped() | ev.StepSkippedManually():
                reason = getattr(event, "reason", "skipped by an operator")
                self._step(step_id, at).events.append(SpanEvent("skipped", at, {"reason": reason}))
                self._end_step(step_id, at, "unset", "", "skipped")
            case ev.StepCancelled():
                self._end_attempt(step_id, at, "unset", "")
                self._end_step(step_id, at, "unset", "", "cancelled")
            case ev.StepCacheHit():
                hit = SpanEvent("cache hit", at, {"wfa.cache.source_run_id": event.source_run_id})
                self._step(step_id, at).events.append(hit)
                self._end_step(step_id, at, "ok", "", "succeeded")
            case ev.RetryScheduled():
                retry: dict[str, AttributeValue] = {
                    "wfa.attempt": event.attempt,
                    "wfa.retry_at": event.retry_at,
                }
                self._step(step_id, at).events.append(SpanEvent("retry scheduled", at, retry))
            case ev.StepMovedToFallback():
                fallback = SpanEvent("moved to fallback", at, {"wfa.agent": event.agent})
                self._step(step_id, at).events.append(fallback)
            case ev.StepPaused():
                paused = SpanEvent("paused", at, {"reason": event.reason})
                self._step(step_id, at).events.append(paused)
            case ev.StepWaitingForApproval():
                self._step(step_id, at).events.append(SpanEvent("waiting for approval", at))
            case ev.StepApproved():
                self._step(step_id, at).events.append(SpanEvent("approved", at))
            case ev.StepSleeping():
                sleep = SpanEvent("sleeping", at, {"wfa.until": event.until})
                self._step(step_id, at).events.append(sleep)
            case ev.StepWaitingForSignal():
                waits = SpanEvent("waiting for signal", at, {"wfa.signal": event.signal})
                self._step(step_id, at).events.append(waits)
            case ev.SignalConsumed():
                got = SpanEvent("signal received", at, {"wfa.signal": event.name})
                self._step(step_id, at).events.append(got)
            case ev.StepRetriedManually():
                self._step(step_id, at).events.append(SpanEvent("retried manually", at))
            case ev.ForeachExpanded():
                items: dict[str, AttributeValue] = {"wfa.foreach.items": len(event.items)}
                self._step(step_id, at).events.append(SpanEvent("foreach expanded", at, items))
            case _:  # StepReady and anything newer: the step span opens
                self._step(step_id, at)

    def _run_event(self, event: Any, at: float) -> None:
        root = self.root
        match event:
            case ev.RunStarted():
                root.events.append(SpanEvent("started", at))
            case ev.RunPaused():
                root.events.append(SpanEvent("paused", at, {"reason": event.reason}))
            case ev.RunResumed():
                root.events.append(SpanEvent("resumed", at))
            case ev.RunSucceeded():
                self._end_run(at, "ok", "", "succeeded")
            case ev.RunFailed():
                self._end_run(at, "error", event.reason, "failed")
            case ev.RunTimedOut():
                self._end_run(at, "error", "timed out", "timed_out")
            case ev.RunCancelled():
                root.events.append(SpanEvent("cancelled", at, {"reason": event.reason}))
                self._end_run(at, "unset", "", "cancelled")

    # -- spans ---------------------------------------------------------------

    def _ids(self, step_id: str) -> dict[str, AttributeValue]:
        return {"wfa.run_id": self.run_id, "wfa.workflow": self.workflow, "wfa.step_id": step_id}

    def _step(self, step_id: str, at: float) -> _Open:
        """The step's open span, opened at `at` if it has none (first event, or reopened)."""
        span = self.steps.get(step_id)
        if span is None:
            generation = self.generation.get(step_id, -1) + 1
            self.generation[step_id] = generation
            base = step_id.split("[", 1)[0]  # foreach instance `x[2]` is a child of `x`
            parent = self.steps.get(base) if base != step_id else None
            span = _Open(
                "step",
                f"step {step_id}",
                span_id_of(self.run_id, step_id, "step", generation),
                (parent or self.root).span_id,
                at,
            )
            span.attributes.update(self._ids(step_id))
            self.steps[step_id] = span
        return span

    def _end_attempt(self, step_id: str, at: float, status: Status, message: str) -> None:
        span = self.attempts.pop(step_id, None)
        if span is not None:
            self._close(span, at, status, message)

    def _end_step(self, step_id: str, at: float, status: Status, message: str, what: str) -> None:
        span = self._step(step_id, at)
        del self.steps[step_id]
        span.attributes["wfa.status"] = what
        self._close(span, at, status, message)

    def _end_run(self, at: float, status: Status, message: str, what: str) -> None:
        for step_id in list(self.attempts):
            self._end_attempt(step_id, at, "unset", "")
        for step_id in list(self.steps):
            self._end_step(step_id, at, "unset", "", "cancelled")
        self.root.attributes["wfa.status"] = what
        self._close(self.root, at, status, message)
        self.ended = True

    def _close(self, span: _Open, at: float, status: Status, message: str) -> None:
        span.end = max(at, span.start)
        span.status, span.status_message = status, message
        self.closed.append(span)


def spans_for_run(events: Iterable[Any], now: float | None = None) -> list[SpanData]:
    """Every span of one run from its events (the first is RunSubmitted), sorted by start.

    Spans still open (a running run) end at `now`, or at the last event's time,
    and are marked `open`.
    """
    it = iter(events)
    first = next(it, None)
    if not isinstance(first, ev.RunSubmitted):
        raise ValueError("a run's events start with RunSubmitted")
    builder = SpanBuilder.for_submitted(first)
    spans = builder.on_events(it)
    spans += builder.open_spans(now)
    spans.sort(key=lambda s: (s.start, {"run": 0, "step": 1, "attempt": 2}[s.kind], s.name))
    return spans
