"""The engine's side of the trace exporter process (engine/telemetry/exporter.py).

Started by the Observer of a driving engine when `telemetry.traces` is `otlp`
or `console`: one child, `python -P -m engine.telemetry.exporter`, in its own
process group (a Ctrl-C at the terminal reaches the engine, which then stops
it in order), with stdin a pipe whose EOF means "stop". Nothing crosses the
pipe: the child reads the event log itself, so the engine's only cost is the
process's existence.

Telemetry never stops runs: a child that cannot start or dies is logged once
and the engine carries on without live traces (the log keeps everything;
`wfa traces RUN --export` sends any run). The child's log lines are relayed
to the `wfa.telemetry` logger; `close()` waits at most SHUTDOWN_SECONDS, then
kills the child's process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import msgspec

from engine.rules.config import TelemetryConfig

log = logging.getLogger("wfa.telemetry")
log.addHandler(logging.NullHandler())

SHUTDOWN_SECONDS = 2.0
STATS_PREFIX = "STATS "  # the child's last stderr line: its figures as JSON
_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding `engine`
_LEVELS = logging.getLevelNamesMapping()


class ExporterProcess:
    """The running trace exporter; `stats` holds its figures once it has exited cleanly."""

    def __init__(
        self, events_dir: str | os.PathLike[str], telemetry: TelemetryConfig, start_position: int
    ) -> None:
        self.stats: dict[str, int] | None = None
        self._closing = False
        argv = [
            sys.executable,
            "-P",  # with _ROOT first on PYTHONPATH: the working directory never shadows us
            "-m",
            "engine.telemetry.exporter",
            str(events_dir),
            msgspec.json.encode(telemetry).decode(),
            str(start_position),
        ]
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}
        try:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own process group
            )
        except OSError as exc:
            log.warning("traces: cannot start the exporter process (%s); no live traces", exc)
            self.process = None
            return
        assert self.process.stderr is not None
        self._relay = threading.Thread(
            target=self._relay_lines,
            args=(self.process, self.process.stderr),
            name="wfa-trace-exporter",
            daemon=True,
        )
        self._relay.start()

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def _relay_lines(self, process: subprocess.Popen[bytes], stderr: IO[bytes]) -> None:
        """Relay the child's log lines; when its stderr ends, it has ended: say so once."""
        for raw in stderr:
            line = raw.decode(errors="replace").rstrip()
            if line.startswith(STATS_PREFIX):
                try:
                    self.stats = msgspec.json.decode(line[len(STATS_PREFIX) :])
                except msgspec.DecodeError:
                    log.debug("traces: unreadable exporter figures %r", line)
                continue
            name, _, message = line.partition(" ")
            level = _LEVELS.get(name)
            if level is None:  # a traceback or a library's own print
                level, message = logging.WARNING, line
            log.log(level, "%s", message)
        code = process.wait()
        if not self._closing:
            log.warning(
                "traces: the exporter process (pid %d) exited with code %s; runs go on "
                "without live traces (`wfa traces RUN --export` sends any run from the log)",
                process.pid,
                code,
            )

    def close(self, timeout: float = SHUTDOWN_SECONDS) -> None:
        """Close the pipe (the child drains the log and exits); kill it after `timeout` s."""
        process = self.process
        if process is None or self._closing:
            return
        self._closing = True
        try:
            assert process.stdin is not None
            process.stdin.close()
        except OSError:  # it is gone already
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("traces: the exporter did not finish within %.0f s; stopped it", timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self._relay.join(0.5)
