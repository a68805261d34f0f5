"""A real Jaeger (v2, all-in-one) for tests: built once with Go, started on free loopback ports.

`jaeger_binary()` builds Jaeger from its Go module into a cache folder outside
the repository (`$XDG_CACHE_HOME/workflow-automator/jaeger/VERSION/jaeger`,
default `~/.cache/...`) and reuses it afterwards. `go install MODULE@VERSION`
refuses Jaeger, whose go.mod has a `replace` directive, so the build downloads
the module with `go mod download` and runs `go install ./cmd/jaeger` inside it,
with its own go.mod and go.sum: the same program, pinned by the module's checksum.
The first build takes minutes (see the README); the binary is moved into place
only when complete, so an interrupted build leaves nothing half-written. A lock
file beside it lets one build serve every process that asks at once: CI starts
`python -m tests.e2e.jaeger` in the background before the tests, and the test
fixture waits for that build instead of starting a second one.

`JaegerServer` writes its own collector-style config (OTLP gRPC + HTTP in,
memory storage, the query API) with every listener, the collector's own
metrics included, on 127.0.0.1, starts the binary and stops it by its PID.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MODULE = "github.com/jaegertracing/jaeger"
VERSION = "v1.76.0"
BUILD_TIMEOUT = 1800  # seconds; a cold build on 2 busy cores takes several minutes
START_TIMEOUT = 60.0


class JaegerUnavailable(RuntimeError):
    """Go is missing or the build failed; the message says which, with the build's output."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "workflow-automator" / "jaeger" / VERSION


def jaeger_binary() -> Path:
    """The cached Jaeger binary, built first when missing (JaegerUnavailable if it cannot be)."""
    binary = cache_dir() / "jaeger"
    if binary.is_file():
        return binary
    go = shutil.which("go")
    if go is None:
        raise JaegerUnavailable("`go` is not on PATH: it is needed once, to build Jaeger")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with (binary.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process's build: wait for it, then reuse it
        if not binary.is_file():
            _build(go, binary)
    return binary


def _build(go: str, binary: Path) -> None:
    download = _go(go, ["mod", "download", "-json", f"{MODULE}@{VERSION}"], None)
    source = json.loads(download)["Dir"]
    with tempfile.TemporaryDirectory(dir=binary.parent, prefix=".build-") as gobin:
        _go(go, ["install", "./cmd/jaeger"], source, {"GOBIN": gobin, "GOFLAGS": "-mod=readonly"})
        os.replace(Path(gobin) / "jaeger", binary)


def _go(go: str, args: list[str], cwd: str | None, env: dict[str, str] | None = None) -> str:
    command = [go, *args]
    try:
        done = subprocess.run(
            command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
            timeout=BUILD_TIMEOUT,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise JaegerUnavailable(f"{' '.join(command)} took over {BUILD_TIMEOUT} s") from exc
    if done.returncode != 0:
        raise JaegerUnavailable(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-4000:]}"
        )
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    logs:
      level: warn
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics}

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{health}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 10000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{otlp_grpc}
      http:
        endpoint: 127.0.0.1:{otlp_http}

processors:
  batch:
    timeout: 100ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class JaegerServer:
    """One Jaeger process on free 127.0.0.1 ports; a context manager that stops it by PID.

    `otlp_url` is the OTLP/HTTP base endpoint (what `telemetry.otlp_endpoint`
    takes), `query_url` the query API and UI.
    """

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.ports = {
            name: free_port()
            for name in ("otlp_grpc", "otlp_http", "query", "query_grpc", "health", "metrics")
        }
        self.config = workdir / "jaeger.yaml"
        self.config.write_text(CONFIG.format(**self.ports))
        self.log = workdir / "jaeger.log"
        self.binary = binary
        self.otlp_url = f"http://127.0.0.1:{self.ports['otlp_http']}"
        self.query_url = f"http://127.0.0.1:{self.ports['query']}"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> JaegerServer:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while self.get("/api/services") is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise JaegerUnavailable(f"Jaeger did not start:\n{self.log.read_text()[-4000:]}")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def get(self, path: str) -> Any:
        """The query API's JSON answer to GET `path`; None when it is not there (yet)."""
        try:
            with urllib.request.urlopen(self.query_url + path, timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def trace(self, trace_id: str, spans: int, timeout: float = 30.0) -> dict[str, Any]:
        """The trace from `/api/traces/ID` once it holds `spans` spans (Jaeger ingests late)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.get(f"/api/traces/{trace_id}")
            got = found["data"] if found else []
            if len(got) == 1 and len(got[0]["spans"]) >= spans:
                return dict(got[0])
            if time.monotonic() > deadline:
                held = [len(t["spans"]) for t in got]
                raise AssertionError(f"Jaeger has {held} spans of {trace_id}, not {spans}")
            time.sleep(0.1)


if __name__ == "__main__":  # build (or find) the cached binary ahead of the tests
    print(jaeger_binary())
