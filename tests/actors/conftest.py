"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.actors.dask_processes import DaskProcesses


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[Any]:
    """A two-worker Dask cluster of real processes on 127.0.0.1 (one per test module)."""
    distributed = pytest.importorskip(
        "distributed", reason="the dask backend needs `pip install workflow-automator[dask]`"
    )
    with distributed.LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        resources={"GPU": 1},
    ) as local:
        yield local


@pytest.fixture()
def processes(tmp_path: Path) -> Iterator[DaskProcesses]:
    """A Dask scheduler and workers as real processes of this test, all stopped after it."""
    directory = tmp_path / "cluster"
    directory.mkdir()
    procs = DaskProcesses(directory)
    try:
        yield procs
    finally:
        procs.stop_all()
