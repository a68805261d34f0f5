"""The request to run one attempt and the outcome it produced.

Both are frozen msgspec Structs: they cross from the workflow actor to a step
actor (and, msgpack-encoded, to a child process) and back, and nothing mutable
may be shared between actors.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec

from engine.rules.errors import ErrorKind
from engine.rules.values import MAX_OUTPUT_BYTES

__all__ = [
    "KILL_GRACE_SECONDS",
    "AttemptOutcome",
    "AttemptRequest",
    "OutputsError",
    "cancelled_outcome",
    "failed_outcome",
]

KILL_GRACE_SECONDS = 2.0
"""How long a process group has between SIGTERM and SIGKILL."""


class AttemptRequest(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to run one attempt of one step, with templates rendered.

    Exactly one of `argv` (a `run` step) and `call` (a `call` step,
    "module:function") is set.
    """

    run_id: str
    step_id: str
    attempt: int
    agent: str
    idempotency_key: str
    output_dir: str  # full stdout/stderr/log of this attempt go here; created 0700
    argv: tuple[str, ...] | None = None  # a `run` step; executed without a shell
    call: str | None = None  # "module:function"
    params: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    steps: dict[str, Any] = {}  # upstream: {id: {"outputs": ..., "status": ...}}
    step_calls: dict[str, str] = {}  # "module:function" of the run's call steps: typed outputs
    item: Any = None  # foreach item
    env: dict[str, str] = {}  # the step's `env:`, over the engine's environment
    timeout: float | None = None  # seconds for this attempt; None: no limit
    isolation: Literal["thread", "process"] = "thread"  # for call steps
    max_output_bytes: int = MAX_OUTPUT_BYTES  # larger outputs fail with kind `output`
    tail_bytes: int = 4096  # how much of stdout/stderr to keep in the outcome
    kill_grace: float = KILL_GRACE_SECONDS  # SIGTERM -> SIGKILL delay for process groups
    code_dir: str | None = None  # the workflow file's directory, on the import path of `call`
    env_pass: tuple[str, ...] | None = None  # None: inherit the whole environment; else only these
    max_log_bytes: int | None = 10 << 20  # per stream: head and tail kept (log_cap.py); None: all


class AttemptOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one attempt ended.

    Exactly one of these holds: `succeeded`; `cancelled` (the caller's cancel
    event was set; `error_kind` is None because cancelling is not a failure
    to retry); or a failure with an `error_kind` and a `message`.
    """

    succeeded: bool
    started_at: float  # time.time() when the attempt started
    ended_at: float  # time.time() when it ended
    outputs: Any = None  # JSON-compatible plain data; None unless succeeded
    error_kind: ErrorKind | None = None
    message: str = ""
    # The last tail_bytes bytes of stdout/stderr, decoded as UTF-8 (invalid bytes replaced);
    # for a call, what it printed and logged.
    stdout_tail: str = ""
    stderr_tail: str = ""
    exit_code: int | None = None  # Popen convention: -N for "killed by signal N"
    pid: int | None = None  # the process (group leader) that ran the attempt
    cancelled: bool = False


class OutputsError(Exception):
    """What a step produced cannot be its outputs (kind `output`); the message says why."""


def failed_outcome(
    kind: ErrorKind, message: str, started: float | None = None, **details: Any
) -> AttemptOutcome:
    """The outcome of an attempt that failed with `kind` (started now if not given)."""
    now = time.time()
    return AttemptOutcome(
        succeeded=False,
        error_kind=kind,
        message=message,
        started_at=now if started is None else started,
        ended_at=now,
        **details,
    )


def cancelled_outcome(started_at: float, **details: Any) -> AttemptOutcome:
    """The outcome of an attempt whose cancel event was set (not a failure to retry)."""
    return AttemptOutcome(
        succeeded=False,
        cancelled=True,
        message="cancelled",
        started_at=started_at,
        ended_at=time.time(),
        **details,
    )
