"""A real Dask cluster of separate processes for the backend tests: `dask scheduler` and
`dask worker`, on 127.0.0.1, each the leader of its own process group and stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])


class DaskProcesses:
    """Starts and stops the processes of one test's cluster; everything it started is
    killed by PID (the process group it leads) in `stop_all`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[subprocess.Popen[bytes]] = []
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.workers: list[subprocess.Popen[bytes]] = []
        self._count = 0

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
        env["DASK_DISTRIBUTED__LOGGING__DISTRIBUTED"] = "warning"
        self._count += 1
        log = open(self.directory / f"{self._count:02d}-{name}.log", "wb")  # noqa: SIM115
        with log:
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(proc)
        return proc

    def start_scheduler(self, port: int = 0, timeout: float = 30.0) -> str:
        """Start `dask scheduler` and return its address (read from its scheduler file)."""
        self._count += 1
        scheduler_file = self.directory / f"scheduler-{self._count}.json"
        argv = [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ]
        self.scheduler = self._spawn("scheduler", argv)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scheduler.poll() is not None:
                raise AssertionError(f"dask scheduler exited: {self.logs()}")
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                self.address = json.loads(scheduler_file.read_text())["address"]
                return self.address
            time.sleep(0.05)
        raise AssertionError(f"dask scheduler did not start within {timeout} s: {self.logs()}")

    def start_worker(self, *extra: str) -> subprocess.Popen[bytes]:
        """Start one `dask worker` (1 thread, no nanny: its PID is the one running tasks)."""
        argv = [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            self.address,
            "--nthreads",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
            *extra,
        ]
        worker = self._spawn("worker", argv)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        """SIGTERM every process group we started, SIGKILL what is left after 5 s."""
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.0, deadline - time.monotonic()))
        for proc in self.started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.directory.glob("*.log"))
        )
