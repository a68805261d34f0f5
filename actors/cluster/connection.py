"""The engine's connection to one Dask scheduler: lazy, bounded, and rebuilt after a loss.

One `ClusterConnection` per agent with `backend: dask`, made by the runtime at
start; it connects on first use, not in the constructor, so an engine starts
even when its cluster is down (the cluster's agent then fails attempts with
kind `agent`, which retry and fallback policies handle).

Every wait is bounded: connecting by `connect_timeout`, questions to the
scheduler by the same. A connection that failed is not retried for
`RETRY_INTERVAL` seconds (the attempts in between fail at once instead of each
waiting `connect_timeout`), and a client whose scheduler went away is dropped
and replaced by a new one on the next use, so a scheduler restarted on the same
address is picked up without the engine doing anything.

Threads: the methods are thread-safe and block the calling thread (the agent's
worker threads; `capacity()` also from wherever the runtime asks). The Dask
client runs its own event loop in a thread of distributed's; the scheduler's
events (a worker left the cluster) are handled on that loop thread, which only
sets flags here.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, TypeAlias

from actors.cluster.availability import require_dask

__all__ = [
    "RETRY_INTERVAL",
    "AttemptWatch",
    "ClusterConnection",
    "ClusterUnavailableError",
    "DaskClient",
]

RETRY_INTERVAL = 1.0
"""Seconds after a failed connection during which uses fail at once with the same error."""

IDENTITY_MAX_AGE = 1.0
"""Seconds the scheduler's list of workers (threads, resources) is reused before asking again."""

_log = logging.getLogger(__name__)

DaskClient: TypeAlias = Any
"""A `distributed.Client`; most of its API is unannotated, so it is handled as Any."""


class ClusterUnavailableError(Exception):
    """The scheduler cannot be reached now; the message names the address (kind `agent`)."""


class AttemptWatch:
    """What the scheduler told about one submitted attempt while it was in flight.

    Set on the client's event-loop thread, read by the step actor's thread.
    """

    __slots__ = ("_lost", "reason")

    def __init__(self) -> None:
        self._lost = threading.Event()
        self.reason = ""

    def lose(self, reason: str) -> None:
        if not self._lost.is_set():
            self.reason = reason
            self._lost.set()

    @property
    def lost(self) -> bool:
        """True once the worker that was running the attempt left the cluster."""
        return self._lost.is_set()


class ClusterConnection:
    """A lazily connected, self-healing Dask client for one agent (see module docstring)."""

    def __init__(
        self, address: str, *, connect_timeout: float = 5.0, agent_name: str | None = None
    ) -> None:
        """Raises `DaskNotInstalledError` when dask.distributed is missing; never connects."""
        require_dask(agent_name or address)
        self.address = address
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()  # guards _client, _failure, _identity, _closed
        self._client: DaskClient | None = None
        self._failure: tuple[float, str] | None = None  # (monotonic time, message)
        self._identity: tuple[float, dict[str, Any]] | None = None
        self._closed = False
        self._watch_lock = threading.Lock()
        self._watched: dict[str, AttemptWatch] = {}

    def __repr__(self) -> str:
        return f"ClusterConnection({self.address!r})"

    # -- connecting --------------------------------------------------------------------

    def client(self) -> DaskClient:
        """A connected client; blocks up to `connect_timeout` seconds to make one.

        Raises `ClusterUnavailableError` when the scheduler cannot be reached, the
        client is reconnecting after a loss, or the connection was closed.
        """
        stale: DaskClient | None = None
        try:
            with self._lock:
                if self._closed:
                    raise ClusterUnavailableError(
                        f"the connection to the Dask scheduler at {self.address} is closed"
                    )
                client = self._client
                if client is not None:
                    status = client.status
                    if status == "running":
                        return client
                    if status in ("connecting", "newly-created"):
                        raise ClusterUnavailableError(
                            f"lost the connection to the Dask scheduler at {self.address}; "
                            "reconnecting"
                        )
                    stale, self._client, self._identity = client, None, None
                return self._connect_locked()
        finally:
            if stale is not None:
                _close_in_background(stale)

    def _connect_locked(self) -> DaskClient:
        if self._failure is not None and time.monotonic() - self._failure[0] < RETRY_INTERVAL:
            raise ClusterUnavailableError(self._failure[1])
        distributed = importlib.import_module("distributed")  # the optional extra, lazily
        try:
            client: DaskClient = distributed.Client(
                self.address, timeout=self.connect_timeout, set_as_default=False
            )
        except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address
            message = (
                f"cannot reach the Dask scheduler at {self.address} within "
                f"{self.connect_timeout:g} s: {exc}"
            )
            self._failure = (time.monotonic(), message)
            raise ClusterUnavailableError(message) from exc
        client.subscribe_topic("all", self._on_cluster_event)
        self._failure = None
        self._client = client
        _log.info("connected to the Dask scheduler at %s", self.address)
        return client

    def close(self) -> None:
        """Disconnect (bounded by `connect_timeout`); later uses fail with kind `agent`.

        Attempts still running on the cluster are released by the scheduler,
        and their workers end them (see worker.py).
        """
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=self.connect_timeout)

    # -- the cluster's size ------------------------------------------------------------

    def capacity(self) -> int:
        """Worker threads in the cluster now (0 when the scheduler cannot be reached).

        Asks the scheduler at most once per `IDENTITY_MAX_AGE` seconds (sooner
        after a worker joined or left); blocks up to `connect_timeout` seconds.
        """
        try:
            workers = self.workers()
        except ClusterUnavailableError:
            return 0
        return sum(int(w.get("nthreads", 0)) for w in workers.values())

    def workers(self) -> dict[str, dict[str, Any]]:
        """The scheduler's view of its workers: address -> {"nthreads", "resources", ...}.

        Raises `ClusterUnavailableError`; blocks up to `connect_timeout` seconds.
        """
        client = self.client()  # first: a cached answer from a lost scheduler is no answer
        with self._lock:
            cached = self._identity
        if cached is not None and time.monotonic() - cached[0] < IDENTITY_MAX_AGE:
            return dict(cached[1].get("workers", {}))
        try:
            identity: dict[str, Any] = client.sync(
                client.scheduler.identity, n_workers=-1, callback_timeout=self.connect_timeout
            )
        except Exception as exc:
            raise ClusterUnavailableError(
                f"the Dask scheduler at {self.address} did not answer within "
                f"{self.connect_timeout:g} s: {exc!r}"
            ) from exc
        with self._lock:
            self._identity = (time.monotonic(), identity)
        return dict(identity.get("workers", {}))

    def unfit_resources(self, resources: Mapping[str, float]) -> str | None:
        """Why no worker could ever run a task needing `resources`, or None if one can.

        Raises `ClusterUnavailableError`.
        """
        workers = self.workers()
        for worker in workers.values():
            offered = worker.get("resources") or {}
            if all(offered.get(name, 0) >= amount for name, amount in resources.items()):
                return None
        wanted = ", ".join(f"{name}={amount:g}" for name, amount in sorted(resources.items()))
        offers = sorted(
            {
                ", ".join(f"{k}={v:g}" for k, v in sorted((w.get("resources") or {}).items()))
                or "none"
                for w in workers.values()
            }
        )
        return (
            f"no worker of the Dask cluster at {self.address} offers {wanted} "
            f"({len(workers)} worker(s); resources offered: {'; '.join(offers) or 'no workers'}); "
            "start a worker with `dask worker --resources ...` or lower the step's resources"
        )

    # -- attempts in flight ------------------------------------------------------------

    def watch(self, key: str) -> AttemptWatch:
        """Start listening for the loss of the worker running the task `key`."""
        watch = AttemptWatch()
        with self._watch_lock:
            self._watched[key] = watch
        return watch

    def unwatch(self, key: str) -> None:
        with self._watch_lock:
            self._watched.pop(key, None)

    def _on_cluster_event(self, event: tuple[float, Any]) -> None:
        """A scheduler event on topic "all"; runs on the client's event-loop thread."""
        _, message = event
        if not isinstance(message, dict):
            return
        action = message.get("action")
        if action in ("add-worker", "remove-worker"):
            with self._lock:
                self._identity = None
        if action != "remove-worker":
            return
        worker = message.get("worker", "?")
        with self._watch_lock:
            for key in message.get("processing-tasks") or ():
                watch = self._watched.get(key) if isinstance(key, str) else None
                if watch is not None:
                    watch.lose(
                        f"the Dask worker {worker} left the cluster at {self.address} "
                        "while it was running the attempt"
                    )


def _close_in_background(client: DaskClient) -> None:
    """Close a client whose scheduler went away without blocking the caller."""

    def close() -> None:
        with contextlib.suppress(Exception):
            client.close(timeout=1)

    threading.Thread(target=close, name="wfa-dask-close", daemon=True).start()
