"""Run one attempt on a Dask cluster: `run_attempt_on_cluster(conn, request, cancel)`.

The contract is `actors.execution.run_attempt`'s: it blocks the calling
thread (a step actor's, which runs nothing else meanwhile) until the
attempt ended, is thread-safe, never raises for anything the step or the
cluster does, and returns an `AttemptOutcome` with the same kinds. The
attempt itself runs on a worker (worker.py) through `run_attempt`, so outputs,
kinds and the worker-side timeout are the local ones by construction. What
this side adds is the cluster's own failures, all kind `agent`, each message
naming the scheduler's address:

| what happened                                                  | kind       |
|----------------------------------------------------------------|------------|
| scheduler unreachable, refused, connect timed out, reconnecting| `agent`    |
| the worker running the attempt left or died (`remove-worker`   |            |
|     event, `KilledWorker`)                                     | `agent`    |
| the client lost the scheduler mid-attempt (future cancelled)   | `agent`    |
| the task failed before our code ran (e.g. the worker cannot    |            |
|     import workflow-automator), or an undecodable answer       | `agent`    |
| no worker offers the Dask resources the step needs             | `resource` |
| no answer `timeout + kill_grace + ANSWER_GRACE` s after submit | `timeout`  |
| `cancel` set                                                   | cancelled  |

A worker that dies mid-task would be silently re-run by Dask elsewhere (up to
the scheduler's `allowed-failures`); the scheduler's `remove-worker` event
tells this side first, so the attempt ends as `agent` and its re-run on the
cluster is cancelled: retries are the engine's, counted and logged.

Waits are bounded: the loop looks at `cancel`, the worker-loss flag, the
client's status and the deadline every `WAIT_SLICE` seconds. On cancel (or the
engine-side deadline) the Dask future is cancelled and this returns at once;
the worker's watchdog ends the process group within about `WAIT_SLICE` plus
the kill grace (worker.py). A result for an attempt nobody waits for any more
is dropped by Dask with its future.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from actors.cluster.connection import (
    AttemptWatch,
    ClusterConnection,
    ClusterUnavailableError,
    DaskClient,
)
from actors.cluster.worker import execute_on_worker
from actors.execution import WAIT_SLICE, AttemptOutcome, AttemptRequest
from actors.execution.attempt import cancelled_outcome, failed_outcome
from actors.execution.classify import describe_exception
from engine.rules.errors import ErrorKind

__all__ = ["ANSWER_GRACE", "attempt_key", "dask_resources", "run_attempt_on_cluster"]

ANSWER_GRACE = 10.0
"""Seconds after the worker-side timeout and kill grace before the engine stops waiting."""

_RESULT_TIMEOUT = 30.0  # fetching a finished attempt's outcome from its worker
_NO_RESOURCES: Mapping[str, float] = MappingProxyType({})


def run_attempt_on_cluster(
    conn: ClusterConnection,
    request: AttemptRequest,
    cancel: threading.Event,
    resources: Mapping[str, float] = _NO_RESOURCES,
) -> AttemptOutcome:
    """Run `request` on the cluster behind `conn`; blocks the calling thread.

    `resources` are Dask resources ({"GPU": 1}) the task needs on its worker;
    pass only those the agent's config declares (see `dask_resources`).
    A malformed request (neither or both of argv and call) raises ValueError.
    """
    if (request.argv is None) == (request.call is None):
        raise ValueError(
            f"attempt {request.step_id}#{request.attempt} needs exactly one of argv and call"
        )
    started = time.time()
    if cancel.is_set():
        return cancelled_outcome(started)
    try:
        client = conn.client()
        unfit = conn.unfit_resources(resources) if resources else None
    except ClusterUnavailableError as exc:
        return failed_outcome(ErrorKind.AGENT, str(exc), started)
    if unfit is not None:
        return failed_outcome(ErrorKind.RESOURCE, unfit, started)
    key = attempt_key(request)
    watch = conn.watch(key)
    try:
        return _submit_and_wait(conn, client, request, cancel, resources, key, watch, started)
    finally:
        conn.unwatch(key)


def attempt_key(request: AttemptRequest) -> str:
    """A Dask key unique to this submission: a retry or re-submission is a new task.

    (Dask deduplicates by key, so reusing one could hand back an earlier result.)
    """
    return f"wfa-{request.run_id}-{request.step_id}-{request.attempt}-{uuid.uuid4().hex[:12]}"


def dask_resources(
    step_resources: Mapping[str, float], agent_resources: Mapping[str, float]
) -> dict[str, float]:
    """The step's resources that the agent's config declares: what Dask must reserve.

    A step's `cpu` or `memory_mb` only become Dask resources when the agent
    lists them; otherwise every task would wait for a worker that offers them.
    """
    return {name: float(v) for name, v in step_resources.items() if name in agent_resources}


def _submit_and_wait(
    conn: ClusterConnection,
    client: DaskClient,
    request: AttemptRequest,
    cancel: threading.Event,
    resources: Mapping[str, float],
    key: str,
    watch: AttemptWatch,
    started: float,
) -> AttemptOutcome:
    try:
        future = client.submit(
            execute_on_worker,
            msgspec.msgpack.encode(request),
            key=key,
            pure=False,
            retries=0,
            resources=dict(resources) or None,
        )
    except Exception as exc:
        return failed_outcome(
            ErrorKind.AGENT,
            f"cannot submit the attempt to the Dask scheduler at {conn.address}: "
            f"{describe_exception(exc)}",
            started,
        )
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())  # runs on a Dask callback thread
    deadline = None
    if request.timeout is not None:
        deadline = time.monotonic() + request.timeout + request.kill_grace + ANSWER_GRACE
    while not done.wait(WAIT_SLICE):
        stopped = _why_stop(conn, client, request, cancel, watch, deadline, started)
        if stopped is not None:
            future.cancel()
            return stopped
    return _collect(conn, future, watch, started)


def _why_stop(
    conn: ClusterConnection,
    client: DaskClient,
    request: AttemptRequest,
    cancel: threading.Event,
    watch: AttemptWatch,
    deadline: float | None,
    started: float,
) -> AttemptOutcome | None:
    """The outcome if waiting for the task must end now, else None."""
    if cancel.is_set():
        return cancelled_outcome(started)
    if watch.lost:
        return failed_outcome(ErrorKind.AGENT, watch.reason, started)
    if client.status != "running":
        return failed_outcome(
            ErrorKind.AGENT,
            f"lost the connection to the Dask scheduler at {conn.address} "
            "while the attempt was running",
            started,
        )
    if deadline is not None and time.monotonic() >= deadline:
        return failed_outcome(
            ErrorKind.TIMEOUT,
            f"timed out after {request.timeout:g} s: the Dask cluster at {conn.address} "
            f"gave no answer within {ANSWER_GRACE:g} s after the attempt's deadline "
            "(queued behind other work, or its worker is stuck); the task was cancelled",
            started,
        )
    return None


def _collect(
    conn: ClusterConnection, future: Any, watch: AttemptWatch, started: float
) -> AttemptOutcome:
    """The outcome of a finished future, its failures mapped to kinds."""
    from distributed import CancelledError
    from distributed.scheduler import KilledWorker

    try:
        data: Any = future.result(timeout=_RESULT_TIMEOUT)
    except CancelledError as exc:  # a BaseException; FutureCancelledError says why
        why = getattr(exc, "reason", "") or "cancelled"
        reason = watch.reason or (
            f"the Dask scheduler at {conn.address} dropped the attempt ({why}); "
            "the scheduler or the engine's connection to it went away"
        )
        return failed_outcome(ErrorKind.AGENT, reason, started)
    except KilledWorker as exc:
        return failed_outcome(
            ErrorKind.AGENT,
            watch.reason
            or f"the Dask workers of {conn.address} died while running the attempt: {exc}",
            started,
        )
    except (OSError, TimeoutError) as exc:  # includes CommClosedError
        return failed_outcome(
            ErrorKind.AGENT,
            f"lost contact with the Dask cluster at {conn.address} while fetching the "
            f"attempt's outcome: {describe_exception(exc)}",
            started,
        )
    except Exception as exc:  # the task failed before our worker-side code could answer
        return failed_outcome(
            ErrorKind.AGENT,
            f"a worker of the Dask cluster at {conn.address} could not run the attempt: "
            f"{describe_exception(exc)} (is workflow-automator, and the step's package, "
            "installed on every worker?)",
            started,
        )
    try:
        outcome: AttemptOutcome = msgspec.msgpack.decode(data, type=AttemptOutcome)
    except (msgspec.DecodeError, TypeError) as exc:
        return failed_outcome(
            ErrorKind.AGENT,
            f"a worker of the Dask cluster at {conn.address} answered something that is not "
            f"an attempt outcome ({exc}); do the engine and the workers run the same "
            "workflow-automator version?",
            started,
        )
    return outcome
