"""What users read about a run: `RunResult` and `StepResult`, their JSON form and an event's.

Built from a `RunState` (live or replayed), so `wfa show`, `wfa replay` and
`run.wait()` can never disagree. The JSON form is the stable machine output of
(README, Machine output): times as ISO 8601 UTC.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from engine.rules.events import RUN_STREAM_PREFIX, ChildOf, Event, iso
from engine.rules.state import RunState, StepError, Waiting, waiting_for

if TYPE_CHECKING:
    from eventstore import Recorded

HUMAN_WAITS = frozenset({"approval", "intervention", "signal"})
"""What only a person (or another system's signal) can end; a signal wait with a
timeout (`... until <time>`) is not among them: its timer will move the run."""


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    status: str
    attempts: int
    agent: str | None
    started_at: float | None
    ended_at: float | None
    outputs: Any
    error: StepError | None
    reason: str | None = None
    child_run_id: str | None = None  # a `workflow:` step's latest child run

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "attempts": self.attempts,
            "agent": self.agent,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "outputs": self.outputs,
            "error": msgspec.to_builtins(self.error) if self.error else None,
            **({"child_run_id": self.child_run_id} if self.child_run_id else {}),
        }


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    run_id: str
    workflow: str
    status: str
    submitted_at: float
    started_at: float | None
    ended_at: float | None
    reason: str | None
    steps: dict[str, StepResult]
    waiting_for: tuple[str, ...] = ()
    outputs: dict[str, Any] | None = None  # the top-level `outputs:`, once succeeded
    child_of: ChildOf | None = None  # a child run: the parent step that started it

    @property
    def needs_intervention(self) -> bool:
        """Every thing it waits for is a person (an approval, a decision on a paused step).

        A paused run whose other steps still run, or wait for a retry, is not yet
        a person's turn: its followers (and the engine driving it) let those
        attempts finish and record their ends first.
        """
        return bool(self.waiting_for) and all(
            w.split(" ", 1)[0] in HUMAN_WAITS and " until " not in w for w in self.waiting_for
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "submitted_at": iso(self.submitted_at),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "reason": self.reason,
            "waiting_for": list(self.waiting_for),
            "steps": [s.to_json() for s in self.steps.values()],
            **({"outputs": self.outputs} if self.outputs is not None else {}),
            **({"child_of": msgspec.to_builtins(self.child_of)} if self.child_of else {}),
        }


def result_of(state: RunState) -> RunResult:
    return RunResult(
        run_id=state.run_id,
        workflow=state.spec.name,
        status=state.status.value,
        submitted_at=state.submitted_at,
        started_at=state.started_at,
        ended_at=state.ended_at,
        reason=state.reason,
        waiting_for=tuple(_waiting_text(w) for w in waiting_for(state)),
        steps={
            sid: StepResult(
                id=sid,
                status=st.status.value,
                attempts=st.attempts,
                agent=st.agent,
                started_at=st.started_at,
                ended_at=st.ended_at,
                outputs=st.outputs,
                error=st.error,
                reason=st.reason,
                child_run_id=st.child_run_id,
            )
            for sid, st in state.steps.items()
        },
        outputs=state.outputs,
        child_of=state.child_of,
    )


def _waiting_text(waiting: Waiting) -> str:
    """`approval of gate`, `retry of api until 2026-11-26T05:15:23.120Z`."""
    text = waiting.reason + (f" of {waiting.step_id}" if waiting.step_id else "")
    return text + (f" until {iso(waiting.at)}" if waiting.at is not None else "")


def event_json(rec: Recorded[Event], *, with_stream: bool = False) -> dict[str, Any]:
    """One event as machine output: its own fields plus seq, type, run_id, at (ISO)."""
    event = rec.event
    fields: dict[str, Any] = msgspec.to_builtins(event)
    run_id = getattr(event, "run_id", None)
    if run_id is None and rec.stream.startswith(RUN_STREAM_PREFIX):
        run_id = rec.stream[len(RUN_STREAM_PREFIX) :]
    line: dict[str, Any] = {
        "seq": rec.position,
        "type": type(event).__name__,
        "run_id": run_id,
        "at": iso(event.at),
    }
    if with_stream:
        line["stream"] = rec.stream
    line.update({k: v for k, v in fields.items() if k not in ("type", "at", "run_id")})
    line["recorded_at"] = iso(rec.recorded_at)
    return line
