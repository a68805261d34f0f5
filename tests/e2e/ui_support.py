"""Starting real `wfa ui` and `wfa serve --ui` processes for the UI tests, on a free
127.0.0.1 port each (`--port 0`; the process prints the URL it got)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_runs import wfa_command

URL = re.compile(r"serving (http://127\.0\.0\.1:\d+)")

WAITING_FLOW = """
name: ui-flow
steps:
  - id: build
    run: ["python3", "-c", "import json, os; print('built');
          json.dump({'n': 1}, open(os.environ['WFA_OUTPUTS'], 'w'))"]
  - id: flaky
    after: [build]
    run: ["python3", "-c", "import os, sys;
          sys.exit(0 if int(os.environ['WFA_ATTEMPT']) >= 2 else 1)"]
    retry: {max_attempts: 3, initial_delay: 0.2}
  - id: gate
    after: [flaky]
    approval: true
    run: ["python3", "-c", "pass"]
"""


class Processes:
    """Processes a test started, each in its own group; stopped by pid afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.started = tmp_path, []  # type: ignore[var-annotated]

    def start(self, data: Path, *args: str, env: dict[str, str] | None = None) -> Any:
        log = self.tmp_path / f"proc-{len(self.started)}.log"
        clean = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
        process = subprocess.Popen(
            [*wfa_command(), "--data", str(data), *args],
            stdout=subprocess.DEVNULL,
            stderr=open(log, "w"),  # noqa: SIM115
            env={**clean, **(env or {})},
            start_new_session=True,
        )
        process.log = log  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    def ui(self, data: Path, *args: str, env: dict[str, str] | None = None) -> str:
        """Start `wfa ui --port 0 ARGS`; its base URL once it listens."""
        process = self.start(data, "ui", "--port", "0", *args, env=env)
        return self.url_of(process)

    def url_of(self, process: Any, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = process.log.read_text()
            found = URL.search(text)
            if found:
                return found.group(1)
            if process.poll() is not None:
                raise AssertionError(f"wfa exited {process.returncode}: {text}")
            time.sleep(0.05)
        raise AssertionError(f"no URL printed: {process.log.read_text()}")

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture(name="procs")
def procs_fixture(tmp_path: Path) -> Iterator[Processes]:
    """Start wfa processes with `procs.start/ui`; each is stopped after the test."""
    started = Processes(tmp_path)
    yield started
    started.stop_all()


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http(
    url: str,
    *,
    method: str = "GET",
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request over a real socket; any status is an answer, redirects are not followed."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=15) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.headers, exc.read())
