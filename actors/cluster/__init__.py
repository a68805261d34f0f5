"""The `dask` agent backend: run attempts on a Dask distributed cluster.

The control plane (scheduler, workflow and step actors, the LMDB log) stays on
the engine host; attempts of agents with `backend: dask` run on the cluster's
workers through `run_attempt_on_cluster`, which has the contract of
`actors.execution.run_attempt` (blocking, thread-safe, same outcomes and error
kinds; the cluster's own failures are kind `agent`).

The runtime, for each agent with `backend: dask`:

- at start: `require_dask(agent.name)` (a clear error when the optional extra
  is missing), then `ClusterConnection(agent.address, agent_name=agent.name)`
  (connects lazily; nothing blocks here);
- on a step actor's thread, per attempt: `run_attempt_on_cluster(conn,
  request, cancel, dask_resources(step_resources, agent.resources))`;
- for capacity: `conn.capacity()` (worker threads; 0 while unreachable);
- at stop: `conn.close()`.

Importing this package does not import Dask; only using a connection does.
"""

from __future__ import annotations

from actors.cluster.availability import DaskNotInstalledError, dask_installed, require_dask
from actors.cluster.connection import ClusterConnection, ClusterUnavailableError
from actors.cluster.submit import attempt_key, dask_resources, run_attempt_on_cluster

__all__ = [
    "ClusterConnection",
    "ClusterUnavailableError",
    "DaskNotInstalledError",
    "attempt_key",
    "dask_installed",
    "dask_resources",
    "require_dask",
    "run_attempt_on_cluster",
]
