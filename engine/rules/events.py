"""Every fact the engine records: runs, steps, agents and alerts, in one tagged union.

An event is a frozen msgspec Struct whose tag is its class name; the log stores
them encoded, and `evolve` (engine/rules/state.py) folds a run's events into its
state. A run's events live in the stream named by its run id, so step and run
events carry no run id (except `RunSubmitted`, which names its run).

Schema evolution (`SCHEMA_VERSION` counts breaking changes; there are none yet):

- Tags never change and an event never changes meaning. A different fact is a
  new event type.
- New fields go last, with a default that describes what older events meant.
  Decoding is lenient: unknown fields (written by a newer engine) are ignored.
- Fields are never removed or retyped; an obsolete one keeps decoding.
- Construction is keyword-only, so adding a field never shifts an argument.

`at` is the time the decision was made, in unix seconds: the `now` given to
`decide`, never a clock read inside the state machine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from engine.rules.errors import ErrorKind
from engine.rules.spec import WorkflowSpec

SCHEMA_VERSION: Final = 1

RUN_STREAM_PREFIX: Final = "run/"  # a run's events live in stream "run/<run_id>"
COMMANDS_STREAM: Final = "commands"  # operators' commands, from any process
PRUNED_STREAM: Final = "pruned"  # tombstones of runs removed from the log (wfa prune)


def run_stream(run_id: str) -> str:
    return RUN_STREAM_PREFIX + run_id


class RunSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The configuration a run's decisions depend on, captured when it is submitted.

    Replay and recovery then never depend on today's configuration file.
    """

    default_timeout: float = 300.0
    default_retry_count: int = 3
    enable_parallel_execution: bool = True
    workflow_dir: str | None = None  # the workflow file's directory: `call:` code is found there
    max_interrupted_attempts: int = 3  # engine crashes in a row a step may cause


class _Event(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    at: float


# ---- run lifecycle ---------------------------------------------------------------


class RunSubmitted(_Event, frozen=True, tag=True, kw_only=True):
    """A run was accepted (queued); `reused` steps start succeeded with those outputs."""

    run_id: str
    spec: WorkflowSpec
    inputs: dict[str, Any] = {}
    settings: RunSettings = RunSettings()
    reused: dict[str, Any] = {}  # step id -> outputs reused by `restart --from`
    parent_run_id: str | None = None  # the run a restart came from
    child_of: ChildOf | None = None  # a child run: the parent step that started it


class RunStarted(_Event, frozen=True, tag=True, kw_only=True):
    """The scheduler admitted the run; `deadline` is when the run timeout fires."""

    deadline: float | None = None


class RunPaused(_Event, frozen=True, tag=True, kw_only=True):
    reason: str


class RunResumed(_Event, frozen=True, tag=True, kw_only=True):
    pass


class RunCancelled(_Event, frozen=True, tag=True, kw_only=True):
    reason: str = "cancelled by an operator"


class RunSucceeded(_Event, frozen=True, tag=True, kw_only=True):
    pass


class RunFailed(_Event, frozen=True, tag=True, kw_only=True):
    reason: str


class RunTimedOut(_Event, frozen=True, tag=True, kw_only=True):
    pass


# ---- steps ----------------------------------------------------------------------


class StepReady(_Event, frozen=True, tag=True, kw_only=True):
    """Dependencies and gates passed: the step needs an agent."""

    step_id: str


class StepWaitingForApproval(_Event, frozen=True, tag=True, kw_only=True):
    step_id: str


class StepApproved(_Event, frozen=True, tag=True, kw_only=True):
    step_id: str


class AttemptStarted(_Event, frozen=True, tag=True, kw_only=True):
    """Attempt `attempt` (1-based) was handed to `agent`; it times out at `timeout_at`."""

    step_id: str
    attempt: int
    agent: str
    idempotency_key: str
    timeout_at: float


class StepSucceeded(_Event, frozen=True, tag=True, kw_only=True):
    """`attempt` 0 means the outputs were gathered from foreach instances."""

    step_id: str
    attempt: int
    outputs: Any = None


class AttemptFailed(_Event, frozen=True, tag=True, kw_only=True):
    """One attempt failed; a RetryScheduled, StepFailed or StepPaused follows."""

    step_id: str
    attempt: int
    kind: ErrorKind
    message: str


class RetryScheduled(_Event, frozen=True, tag=True, kw_only=True):
    """Attempt `attempt` (the next one) becomes ready at `retry_at`."""

    step_id: str
    attempt: int
    retry_at: float


class StepMovedToFallback(_Event, frozen=True, tag=True, kw_only=True):
    step_id: str
    agent: str


class StepFailed(_Event, frozen=True, tag=True, kw_only=True):
    """The step failed for good (no retry left, or not retryable)."""

    step_id: str
    kind: ErrorKind
    message: str


class StepSkipped(_Event, frozen=True, tag=True, kw_only=True):
    step_id: str
    reason: str


class StepPaused(_Event, frozen=True, tag=True, kw_only=True):
    """Final failure of an `on_failure: pause` step: it waits for retry, skip or cancel."""

    step_id: str
    reason: str


class StepRetriedManually(_Event, frozen=True, tag=True, kw_only=True):
    step_id: str


class StepSkippedManually(_Event, frozen=True, tag=True, kw_only=True):
    """An operator skipped the step; non-None `outputs` stand in for a success."""

    step_id: str
    outputs: Any = None


class StepCancelled(_Event, frozen=True, tag=True, kw_only=True):
    step_id: str


class StepCacheHit(_Event, frozen=True, tag=True, kw_only=True):
    """An identical earlier call's outputs were reused; the step succeeded."""

    step_id: str
    outputs: Any
    source_run_id: str


class ForeachExpanded(_Event, frozen=True, tag=True, kw_only=True):
    """The step fanned out into instances `<step_id>[i]`, one per item."""

    step_id: str
    items: list[Any]


# ---- agents and alerts (their own streams; no run logic) ------------------------------


class AgentRegistered(_Event, frozen=True, tag=True, kw_only=True):
    name: str
    capabilities: tuple[str, ...] = ("default",)
    capacity: int = 1


class AgentCapacityChanged(_Event, frozen=True, tag=True, kw_only=True):
    name: str
    capacity: int


class AgentHealthChanged(_Event, frozen=True, tag=True, kw_only=True):
    name: str
    available: bool
    reason: str = ""


class AlertRaised(_Event, frozen=True, tag=True, kw_only=True):
    rule: str
    message: str
    severity: str = "warning"
    run_id: str | None = None
    step_id: str | None = None


class AlertResolved(_Event, frozen=True, tag=True, kw_only=True):
    rule: str
    message: str = ""


# ---- operator commands (stream "commands"; the driving engine turns them into run events) ----


class CommandIssued(_Event, frozen=True, tag=True, kw_only=True):
    """An operator asked for `command` on a run, from any process; checked when issued.

    The run's own stream has one writer, the engine that drives it; commands
    from other processes (`wfa approve`, ...) are facts of their own, which
    that engine follows and decides on.
    """

    run_id: str
    command: str  # approve | retry | skip | cancel | resume | signal
    step_id: str | None = None
    outputs: Any = None  # skip: stand-in outputs; signal: the signal's data
    signal: str | None = None  # signal: its name


# ---- resources and the step cache ----------------------------------


class StepWaitingForResources(_Event, frozen=True, tag=True, kw_only=True):
    """A ready step may not start yet: the machine's usage plus its declared
    `resources` would exceed a cap (`reason` says which); it starts once usage allows."""

    step_id: str
    reason: str


class ResourceCapExceeded(_Event, frozen=True, tag=True, kw_only=True):
    """Measured usage of `resource` (cpu | memory | storage | network) rose above its cap."""

    resource: str
    usage: float  # percent
    cap: float  # percent


class ResourceCapRecovered(_Event, frozen=True, tag=True, kw_only=True):
    """Measured usage of `resource` fell back to its cap or below."""

    resource: str
    usage: float
    cap: float


class CacheEntryStored(_Event, frozen=True, tag=True, kw_only=True):
    """A succeeded `cache:` step's outputs, reusable under `key` until `expires_at`."""

    key: str
    outputs: Any
    run_id: str
    step_id: str
    expires_at: float


class CacheCleared(_Event, frozen=True, tag=True, kw_only=True):
    """`wfa cache clear`: every entry stored before this event is gone."""


# ---- interrupted attempts ---------------------------------------------


class AttemptInterrupted(_Event, frozen=True, tag=True, kw_only=True):
    """Attempt `attempt` was cut short because its engine stopped; recorded at recovery.

    `crashed`: the engine died without closing (else it was stopped). `in_engine`:
    the attempt ran inside the engine's own process (a `call` on a thread), so it
    may be what took the engine down. A StepReady (run it again) or a final
    failure follows.
    """

    step_id: str
    attempt: int
    crashed: bool = True
    in_engine: bool = False


class RunsPruned(_Event, frozen=True, tag=True, kw_only=True):
    """These ended runs were removed from the log (`wfa prune`), their events having
    first been written, fsynced, to `archive`; logged (stream "pruned") in the very
    transaction that removed them. Their positions are gaps from then on."""

    run_ids: tuple[str, ...]
    archive: str


# ---- durable sleep and signals -----------------------------------------


class StepSleeping(_Event, frozen=True, tag=True, kw_only=True):
    """A `sleep`/`until` step waits, holding no agent, until `until` (unix seconds)."""

    step_id: str
    until: float


class StepWaitingForSignal(_Event, frozen=True, tag=True, kw_only=True):
    """A `wait_for` step waits for signal `signal`; no signal by `timeout_at`: it fails."""

    step_id: str
    signal: str
    timeout_at: float | None = None


class SignalReceived(_Event, frozen=True, tag=True, kw_only=True):
    """Signal `name` reached the run; it is kept until a step waiting for it consumes it."""

    name: str
    data: Any = None


class SignalConsumed(_Event, frozen=True, tag=True, kw_only=True):
    """The oldest kept signal `name` was taken by `step_id`; a StepSucceeded follows."""

    step_id: str
    name: str


# ---- child workflows ---------------------------------------------------


class ChildOf(msgspec.Struct, frozen=True, kw_only=True):
    """The parent of a child run: the step (and its attempt) that started it."""

    run_id: str
    step_id: str
    attempt: int
    root_run_id: str = ""  # the top-most ancestor run: its trace holds the child's spans

    @property
    def trace_run_id(self) -> str:
        return self.root_run_id or self.run_id


class ChildRunSubmitted(_Event, frozen=True, tag=True, kw_only=True):
    """A `workflow:` step's attempt `attempt` runs as child run `run_id` with `inputs`;
    the step waits, holding no agent, until that run ends."""

    step_id: str
    attempt: int
    run_id: str
    inputs: dict[str, Any] = {}


class RunOutputsProduced(_Event, frozen=True, tag=True, kw_only=True):
    """The run's top-level `outputs:`, evaluated over its steps; RunSucceeded follows."""

    outputs: dict[str, Any] = {}


# ---- rate limits --------------------------------------------------------------


class RateLimitTokenTaken(_Event, frozen=True, tag=True, kw_only=True):
    """An attempt took a token of rate limit `name` (in the "rate-limits" stream, before
    the attempt starts); the engine rebuilds its buckets from these on start."""

    name: str
    max: int
    per: float
    run_id: str
    step_id: str


class RateLimitTakesCarried(_Event, frozen=True, tag=True, kw_only=True):
    """The takes of rate limit `name` still out at `at` (`taken`, oldest first), written
    when the engine started the "rate-limits" stream afresh: the takes before were
    removed in the same transaction, so the stream stays short (see rate_limiter.py)."""

    name: str
    max: int
    per: float
    taken: tuple[float, ...]


Event = (
    RunSubmitted
    | RunStarted
    | RunPaused
    | RunResumed
    | RunCancelled
    | RunSucceeded
    | RunFailed
    | RunTimedOut
    | StepReady
    | StepWaitingForApproval
    | StepApproved
    | AttemptStarted
    | StepSucceeded
    | AttemptFailed
    | RetryScheduled
    | StepMovedToFallback
    | StepFailed
    | StepSkipped
    | StepPaused
    | StepRetriedManually
    | StepSkippedManually
    | StepCancelled
    | StepCacheHit
    | ForeachExpanded
    | AgentRegistered
    | AgentCapacityChanged
    | AgentHealthChanged
    | AlertRaised
    | AlertResolved
    | CommandIssued
    | StepWaitingForResources
    | ResourceCapExceeded
    | ResourceCapRecovered
    | CacheEntryStored
    | CacheCleared
    | AttemptInterrupted
    | RunsPruned
    | StepSleeping
    | StepWaitingForSignal
    | SignalReceived
    | SignalConsumed
    | ChildRunSubmitted
    | RunOutputsProduced
    | RateLimitTokenTaken  # outside run streams
    | RateLimitTakesCarried
)

EVENT_TYPES: Final[tuple[type[Event], ...]] = (
    RunSubmitted,
    RunStarted,
    RunPaused,
    RunResumed,
    RunCancelled,
    RunSucceeded,
    RunFailed,
    RunTimedOut,
    StepReady,
    StepWaitingForApproval,
    StepApproved,
    AttemptStarted,
    StepSucceeded,
    AttemptFailed,
    RetryScheduled,
    StepMovedToFallback,
    StepFailed,
    StepSkipped,
    StepPaused,
    StepRetriedManually,
    StepSkippedManually,
    StepCancelled,
    StepCacheHit,
    ForeachExpanded,
    AgentRegistered,
    AgentCapacityChanged,
    AgentHealthChanged,
    AlertRaised,
    AlertResolved,
    CommandIssued,
    StepWaitingForResources,
    ResourceCapExceeded,
    ResourceCapRecovered,
    CacheEntryStored,
    CacheCleared,
    AttemptInterrupted,
    RunsPruned,
    StepSleeping,
    StepWaitingForSignal,
    SignalReceived,
    SignalConsumed,
    ChildRunSubmitted,
    RunOutputsProduced,
    RateLimitTokenTaken,  # outside run streams
    RateLimitTakesCarried,
)

RUN_EVENT_TYPES: Final = (
    *EVENT_TYPES[:24],
    StepWaitingForResources,
    AttemptInterrupted,
    StepSleeping,
    StepWaitingForSignal,
    SignalReceived,
    SignalConsumed,
    ChildRunSubmitted,
    RunOutputsProduced,
)  # what `evolve` folds

_MSGPACK_DECODER: Final[msgspec.msgpack.Decoder[Event]] = msgspec.msgpack.Decoder(Event)
_JSON_DECODER: Final[msgspec.json.Decoder[Event]] = msgspec.json.Decoder(Event)
_MSGPACK_ENCODER: Final = msgspec.msgpack.Encoder()


RUN_END_EVENTS = (RunSucceeded, RunFailed, RunCancelled, RunTimedOut)


def is_run_end(event: Event) -> bool:
    """Is this the last event a run stream gets (its run ended)?"""
    return isinstance(event, RUN_END_EVENTS)


def event_type_name(event: Event) -> str:
    """The stable type name (the union tag), e.g. ``"StepSucceeded"``."""
    return type(event).__name__


def step_id_of(event: Event) -> str | None:
    """The step an event is about, or None for run, agent and alert events."""
    return getattr(event, "step_id", None)


def encode_event(event: Event) -> bytes:
    """msgpack bytes as stored in the log."""
    return _MSGPACK_ENCODER.encode(event)


def decode_event(data: bytes) -> Event:
    """Decode one stored event; unknown fields from newer engines are ignored."""
    event: Event = _MSGPACK_DECODER.decode(data)
    return event


def decode_event_json(data: bytes | str) -> Event:
    event: Event = _JSON_DECODER.decode(data)
    return event


def iso(at: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC with milliseconds, e.g. 2026-11-26T05:15:23.120Z."""
    if at is None:
        return None
    try:
        stamp = datetime.fromtimestamp(at, UTC)
    except (OverflowError, ValueError, OSError):  # beyond any calendar: an old log's .inf
        return "never" if at > 0 else repr(at)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
