"""The workflow file (docs/workflow-file.md) as frozen msgspec Structs.

A YAML, JSON or TOML file and the Python builder produce the same
`WorkflowSpec`; the spec is stored whole in the log with `RunSubmitted`, so a
run can always be resumed from the log alone. These types only describe shape
and per-field constraints; cross-field rules (unknown dependencies, cycles,
expressions) live in engine/input/validation.py.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from engine.rules.errors import ErrorKind

WorkflowName = Annotated[
    str,
    Meta(pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="letters, digits, _ . -; 1-100 chars"),
]
StepId = Annotated[
    str, Meta(pattern=r"^[A-Za-z0-9_-]{1,100}$", description="letters, digits, _ -; 1-100 chars")
]
CallPath = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$",
        description="module:function",
    ),
]
MAX_SECONDS = 31_536_000
"""One year: the longest timeout, retry delay or cache ttl (larger ones are mistakes, and
would overflow the timer arithmetic); also refuses .inf and .nan."""
MAX_PRIORITY = 1_000_000
"""Priorities lie in -MAX_PRIORITY..MAX_PRIORITY."""
MAX_AMOUNT = 1_000_000_000
"""The largest resource amount a step may declare (cores, MB, Mbit/s, GPUs)."""

Seconds = Annotated[
    float, Meta(gt=0, le=MAX_SECONDS, description="seconds, > 0 and at most 31536000 = 1 year")
]
Delay = Annotated[
    float, Meta(ge=0, le=MAX_SECONDS, description="seconds, >= 0 and at most 31536000 = 1 year")
]
Priority = Annotated[
    int,
    Meta(
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="a whole number from -1000000 to 1000000; higher first",
    ),
]
Amount = Annotated[
    float, Meta(ge=0, le=MAX_AMOUNT, description="a number >= 0 and at most 1000000000")
]
MAX_DURATION: Final = float(MAX_SECONDS)
"""MAX_SECONDS as a float, for arithmetic on durations."""

DEFAULT_RETRY_ON: tuple[ErrorKind, ...] = (
    ErrorKind.USER,
    ErrorKind.TIMEOUT,
    ErrorKind.AGENT,
    ErrorKind.NETWORK,
    ErrorKind.RESOURCE,
)


class Mode(StrEnum):
    DAG = "dag"  # order comes from `after`
    SEQUENTIAL = "sequential"  # each step after the one listed before it


class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ANY_SUCCESS = "any_success"
    NONE_FAILED = "none_failed"


class OnFailure(StrEnum):
    FAIL = "fail"
    PAUSE = "pause"  # wait for manual intervention


class _Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Strict decoding: unknown keys are errors, with their location."""


class RetrySpec(_Spec, frozen=True, kw_only=True):
    """Retry policy of a step; `max_attempts=None` takes execution.default_retry_count + 1."""

    max_attempts: Annotated[int, Meta(ge=1, le=100)] | None = None
    initial_delay: Delay = 1.0
    backoff: Annotated[float, Meta(ge=1, le=100)] = 2.0
    max_delay: Delay = 60.0
    on: tuple[ErrorKind, ...] = DEFAULT_RETRY_ON


class CacheSpec(_Spec, frozen=True, kw_only=True):
    ttl: Seconds


class ResourcesSpec(_Spec, frozen=True, kw_only=True):
    """What one attempt of the step needs while it runs."""

    cpu: Amount = 0.0  # cores
    memory_mb: Amount = 0.0
    storage_mb: Amount = 0.0
    network_mbps: Amount = 0.0
    gpu: Amount = 0.0


class WaitForSpec(_Spec, frozen=True, kw_only=True):
    """Wait for `wfa signal RUN <signal>`; its data become the step's outputs."""

    signal: StepId  # the signal's name
    timeout: Seconds | None = None  # no signal by then: the step fails with kind timeout


class StepSpec(_Spec, frozen=True, kw_only=True):
    id: StepId
    description: str = ""
    run: tuple[str, ...] | None = None  # argv, never a shell; elements may hold ${{ }}
    call: CallPath | None = None  # module:function, fn(ctx) -> outputs
    params: dict[str, Any] = msgspec.field(default_factory=dict, name="with")
    env: dict[str, str] = msgspec.field(default_factory=dict)
    after: tuple[str, ...] = ()
    agent: str = "default"  # capability the agent must have
    retry: RetrySpec | None = None
    timeout: Seconds | None = None  # per attempt; None takes execution.default_timeout
    fallback: tuple[str, ...] = ()  # agent names to move to when the chosen one fails
    resources: ResourcesSpec | None = None
    cache: CacheSpec | None = None
    critical: bool = True  # False: a final failure does not fail the run
    when: str | None = None  # CEL; false skips the step
    trigger: TriggerRule = TriggerRule.ALL_SUCCESS
    on_failure: OnFailure = OnFailure.FAIL
    approval: bool = False  # wait for `wfa approve` before running
    foreach: str | None = None  # CEL list; one instance per item
    priority: Priority = 0  # higher starts first when capacity is short
    sleep: Delay | None = None  # wait this long, durably, then succeed with {}
    until: str | None = None  # ISO 8601 time (may hold ${{ }}): wait until then, then succeed
    wait_for: WaitForSpec | None = None  # wait for a signal; its data are the outputs
    # ---- child workflows ----
    workflow: str | None = None  # a child workflow (file path or name); `with:` its inputs
    rate_limit: RateLimitSpec | None = None  # attempts start at most max per `per` seconds


class Overlap(StrEnum):
    """What a schedule's firing does while its previous run has not ended."""

    SKIP = "skip"  # nothing: that firing is dropped
    QUEUE = "queue"  # one run waits, submitted when the previous one ends
    ALLOW = "allow"  # a new run at once, beside the previous one


class ScheduleSpec(_Spec, frozen=True, kw_only=True):
    cron: str  # five or six fields, local time
    overlap: Overlap = Overlap.SKIP


class WorkflowSpec(_Spec, frozen=True, kw_only=True):
    name: WorkflowName
    description: str = ""
    mode: Mode = Mode.DAG
    timeout: Seconds | None = None  # whole-run timeout
    priority: Priority = 0  # higher runs first when runs are queued
    schedule: str | ScheduleSpec | None = None  # cron, or {cron, overlap}; for `wfa serve`
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    steps: tuple[StepSpec, ...]
    # ---- child workflows ----
    outputs: dict[str, str] = msgspec.field(default_factory=dict)  # name -> CEL over steps
    # the child workflows that steps' `workflow:` name, by that reference; filled in
    # when the file is loaded, so that a run's stored spec holds all it runs
    workflows: dict[str, WorkflowSpec] = msgspec.field(default_factory=dict)
    concurrency: ConcurrencySpec | None = None  # at most `limit` running runs per key value


# ---- concurrency keys and rate limits ----------------------------------------

MAX_LIMIT = 1_000_000
"""The largest concurrency limit or rate-limit count (larger ones are mistakes)."""
Limit = Annotated[int, Meta(ge=1, le=MAX_LIMIT, description="a whole number from 1 to 1000000")]


class ConcurrencySpec(_Spec, frozen=True, kw_only=True):
    """At most `limit` runs of this workflow whose `key` renders the same run at once."""

    key: Annotated[str, Meta(min_length=1, max_length=1000)]  # may hold ${{ inputs.X }}
    limit: Limit = 1


class RateLimitSpec(_Spec, frozen=True, kw_only=True):
    """At most `max` attempts start in any `per` seconds, across all runs."""

    max: Limit
    per: Seconds
