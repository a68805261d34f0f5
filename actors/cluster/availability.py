"""Whether the optional Dask extra is installed, and the error when it is not.

This module imports no Dask: the runtime calls `require_dask` at start for
every agent with `backend: dask`, so that a missing extra is one clear error
before any run starts, not an ImportError in the middle of one.
"""

from __future__ import annotations

import importlib
import sys

from engine.rules.errors import WorkflowAutomatorError

__all__ = ["DaskNotInstalledError", "dask_installed", "require_dask"]


class DaskNotInstalledError(WorkflowAutomatorError):
    """An agent has `backend: dask` but dask.distributed cannot be imported."""

    def __init__(self, agent_name: str, reason: str = "") -> None:
        self.agent_name = agent_name
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"agent {agent_name!r} has backend: dask, which needs "
            f"`pip install workflow-automator[dask]` in the engine's environment "
            f"({sys.executable}){detail}"
        )


def dask_installed() -> bool:
    """True when dask.distributed can be imported here."""
    try:
        importlib.import_module("distributed")
    except ImportError:
        return False
    return True


def require_dask(agent_name: str) -> None:
    """Raise `DaskNotInstalledError` naming `agent_name` unless dask.distributed imports."""
    try:
        importlib.import_module("distributed")
    except ImportError as exc:
        raise DaskNotInstalledError(agent_name, str(exc)) from exc
