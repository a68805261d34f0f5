"""Start a process in its own process group and make sure the whole group ends.

Every process an attempt starts (a `run` step's program, a process-isolated
`call`) is the leader of a new session and process group, so everything it
spawns can be signalled at once. `supervise` blocks the calling thread until
the leader exits, the timeout passes or the cancel event is set; on timeout or
cancel it sends SIGTERM to the group, waits `grace` seconds, then SIGKILLs
what is left. Processes the leader left behind after a normal exit are ended
the same way (as Airflow reaps a task's process group), so a step never leaks
processes into the engine's machine.

The leader is not reaped until the group is dealt with: an unreaped leader
keeps its PID, and so the group id, from being reused, which makes
`killpg` safe. Waiting is blocking, not busy: a pidfd polled in slices of
`WAIT_SLICE` seconds so that the cancel event is seen promptly.

"Gone" means the process no longer exists or is a zombie: a descendant killed
after its parent died is reparented to PID 1, and in containers whose PID 1
does not reap children it stays a zombie, which holds no resources. A
descendant that left the group with `setsid()` is still ended if it existed
when termination started (it is found through the process tree).
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import msgspec
import psutil

from actors.execution.attempt import AttemptOutcome, AttemptRequest, cancelled_outcome
from actors.execution.files import (
    STDERR_FILE,
    STDOUT_FILE,
    last_line,
    open_private,
    read_regular,
    read_tail,
)
from actors.execution.log_cap import PipedLogs
from engine.rules.errors import ErrorKind

__all__ = [
    "GROUP_FILE",
    "WAIT_SLICE",
    "Ending",
    "Exited",
    "ProcessEnd",
    "attempt_processes",
    "end_leftover_group",
    "end_processes",
    "spawn_group_leader",
    "spawn_with_logs",
    "supervise",
    "supervise_attempt",
]

WAIT_SLICE = 0.1
"""Longest a wait blocks before looking at the cancel event again, in seconds."""

_KILL_WAIT = 5.0  # how long SIGKILLed processes get to disappear before we give up
_POLL = 0.02  # interval for checking processes we cannot wait on (not our children)

_log = logging.getLogger(__name__)

GROUP_FILE = "group.json"
"""Where an attempt records its process group: {"pgid", "started" (create time)}."""


class Ending(enum.Enum):
    """Why `supervise` stopped waiting."""

    EXITED = "exited"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ProcessEnd:
    ending: Ending
    returncode: int  # Popen convention: -N when killed by signal N


def spawn_group_leader(
    argv: list[str] | tuple[str, ...],
    *,
    env: dict[str, str],
    stdin: int | IO[Any] | None,
    stdout: int | IO[Any],
    stderr: int | IO[Any],
    record_in: str,
) -> subprocess.Popen[bytes]:
    """Start `argv` (never through a shell) as the leader of a new process group.

    The group is recorded in `record_in` (the attempt's output directory), so
    that an engine recovering after a crash can end what this attempt left
    running before it runs the step again (see `end_leftover_group`).
    Raises OSError as `subprocess.Popen` does when the program cannot be run.
    """
    proc = subprocess.Popen(
        list(argv),
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
        shell=False,
    )
    with contextlib.suppress(psutil.Error, OSError):  # only a safety net for recovery
        started = psutil.Process(proc.pid).create_time()
        with open_private(os.path.join(record_in, GROUP_FILE)) as f:
            f.write(json.dumps({"pgid": proc.pid, "started": started}).encode())
    return proc


def spawn_with_logs(
    argv: list[str] | tuple[str, ...],
    *,
    env: dict[str, str],
    out_dir: str,
    max_log_bytes: int | None,
) -> tuple[subprocess.Popen[bytes], PipedLogs]:
    """`spawn_group_leader` with no stdin, and stdout and stderr piped into the attempt's
    capped `stdout.log` and `stderr.log` (their reader running). Raises OSError, with
    nothing left open, when the program cannot be started."""
    out = os.path.join(out_dir, STDOUT_FILE)
    logs = PipedLogs(out, os.path.join(out_dir, STDERR_FILE), max_log_bytes)
    try:
        proc = spawn_group_leader(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logs.stdout,
            stderr=logs.stderr,
            record_in=out_dir,
        )
    except OSError:
        logs.abandon()
        raise
    logs.start()
    return proc, logs


def end_leftover_group(output_dir: str, grace: float = 2.0) -> list[int]:
    """End the process group an attempt recorded, if it is still running; the PIDs ended.

    An engine killed with SIGKILL leaves its steps' process groups running (each
    is a session of its own). Recovery calls this for the attempts that were in
    flight before it runs them again, so the old and the new attempt never run
    side by side. Safe against PID reuse: only processes of that group started
    no earlier than its recorded leader are touched.
    """
    try:  # the step could have replaced the record (a FIFO must not block recovery)
        found = read_regular(os.path.join(output_dir, GROUP_FILE), 4096)
        if found is None:
            return []
        record = json.loads(found[0])
        pgid, started = int(record["pgid"]), float(record["started"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    members = [p for p in _group_members(pgid) if _started_since(p, started)]
    if not members:
        return []
    pids = sorted(p.pid for p in members)
    _log.warning("ending process group %d left running by an earlier engine: %s", pgid, pids)
    with _ExitWatcher(pgid) as leader:
        _terminate_group(pgid, leader, grace)
    return pids


AttemptKey = tuple[str, str, str]  # WFA_RUN_ID, WFA_STEP_ID, WFA_ATTEMPT


def attempt_processes() -> dict[AttemptKey, list[psutil.Process]]:
    """Live processes of this user started for an attempt, by their WFA_* environment.

    A step's processes all carry the attempt in their environment, including
    one an engine spawned but died before recording (see `end_leftover_group`).
    One scan of the process table; recovery does it once per engine start.
    """
    found: dict[AttemptKey, list[psutil.Process]] = {}
    uid = os.getuid()
    for proc in psutil.process_iter(["uids"]):
        try:
            if proc.info["uids"].real != uid or proc.pid == os.getpid():
                continue
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        run, step, attempt = env.get("WFA_RUN_ID"), env.get("WFA_STEP_ID"), env.get("WFA_ATTEMPT")
        if run and step and attempt:
            found.setdefault((run, step, attempt), []).append(proc)
    return found


def end_processes(processes: list[psutil.Process], grace: float = 2.0) -> list[int]:
    """SIGTERM the processes (and their groups), SIGKILL what outlives `grace`; the PIDs ended."""
    alive = [p for p in processes if _alive(p)]
    for p in alive:
        with contextlib.suppress(psutil.Error, OSError):
            os.killpg(os.getpgid(p.pid), signal.SIGTERM)
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, survivors = psutil.wait_procs(alive, timeout=grace)
    for p in survivors:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return sorted(p.pid for p in alive)


def _started_since(p: psutil.Process, leader_started: float) -> bool:
    try:
        return bool(p.create_time() >= leader_started - 0.01)
    except psutil.Error:
        return False


def supervise(
    proc: subprocess.Popen[bytes],
    *,
    timeout: float | None,
    cancel: threading.Event,
    grace: float,
) -> ProcessEnd:
    """Block until `proc` exits, `timeout` seconds pass or `cancel` is set.

    Runs in the caller's thread. When it returns, `proc` is reaped and no
    process of its group is left running.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with _ExitWatcher(proc.pid) as watcher:
        try:
            ending = _wait_for_end(watcher, deadline, cancel)
        except BaseException:  # e.g. KeyboardInterrupt in this thread: leave nothing behind
            _terminate_group(proc.pid, watcher, 0.0)
            proc.wait()
            raise
        if ending is Ending.EXITED:
            leftovers = [p for p in _group_members(proc.pid) if p.pid != proc.pid]
            if leftovers:
                _log.info(
                    "process group %d left %d process(es) running; ending them",
                    proc.pid,
                    len(leftovers),
                )
                _terminate_group(proc.pid, watcher, grace)
        else:
            _terminate_group(proc.pid, watcher, grace)
    return ProcessEnd(ending, proc.wait())


def _wait_for_end(watcher: _ExitWatcher, deadline: float | None, cancel: threading.Event) -> Ending:
    while True:
        if cancel.is_set():
            ending = Ending.CANCELLED
            break
        wait = WAIT_SLICE
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                ending = Ending.TIMED_OUT
                break
            wait = min(wait, remaining)
        if watcher.wait(wait):
            return Ending.EXITED
    # It may have finished on its own at the last moment: then it was not stopped.
    return Ending.EXITED if watcher.wait(0) else ending


class _ExitWatcher:
    """Tells when a child process has exited, without reaping it."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._fd: int | None = None
        self._poll: select.poll | None = None
        self._exited = False
        if hasattr(os, "pidfd_open"):
            try:
                self._fd = os.pidfd_open(pid)
            except OSError:
                self._fd = None
        if self._fd is not None:
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)

    def __enter__(self) -> _ExitWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True once the process has exited."""
        if self._exited:
            return True
        if self._poll is not None:
            self._exited = bool(self._poll.poll(max(0.0, timeout) * 1000))
            return self._exited
        deadline = time.monotonic() + max(0.0, timeout)
        while True:  # no pidfd (not Linux >= 5.3): poll without reaping
            status = os.waitid(os.P_PID, self._pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if status is not None:
                self._exited = True
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL, left))


def _terminate_group(pgid: int, leader: _ExitWatcher, grace: float) -> None:
    """SIGTERM the group (and descendants that left it), SIGKILL what outlives `grace`."""
    tracked = _descendants(pgid) | set(_group_members(pgid))
    _signal(pgid, tracked, signal.SIGTERM)
    if _wait_gone(pgid, leader, tracked, grace):
        return
    tracked |= set(_group_members(pgid)) | _descendants(pgid)
    _signal(pgid, tracked, signal.SIGKILL)
    if not _wait_gone(pgid, leader, tracked, _KILL_WAIT):
        survivors = sorted(p.pid for p in tracked if _alive(p))
        _log.error("processes of group %d survived SIGKILL: %s", pgid, survivors)


def _signal(pgid: int, processes: Iterable[psutil.Process], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            p.send_signal(sig)  # psutil refuses if the PID was reused


def _wait_gone(
    pgid: int, leader: _ExitWatcher, tracked: set[psutil.Process], timeout: float
) -> bool:
    """Wait up to `timeout` seconds for the leader, `tracked` and the group to be gone."""
    deadline = time.monotonic() + timeout
    if not leader.wait(timeout):
        return False
    while True:
        if not any(_alive(p) for p in tracked) and not _group_members(pgid):
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(_POLL, left))


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is `pgid`."""
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != pgid:
                continue
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                members.append(p)
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return members


def _descendants(pid: int) -> set[psutil.Process]:
    try:
        return set(psutil.Process(pid).children(recursive=True))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return set()


def _alive(p: psutil.Process) -> bool:
    try:
        return bool(p.is_running() and p.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class Exited(msgspec.Struct, frozen=True, kw_only=True):
    """What an attempt's process left when it ended: the fields every outcome of it carries."""

    stdout_tail: str
    stderr_tail: str
    exit_code: int
    pid: int
    started_at: float

    def outcome(self, **fields: Any) -> AttemptOutcome:
        """The attempt's outcome, ended now, with these details and `fields`."""
        return AttemptOutcome(**msgspec.structs.asdict(self), ended_at=time.time(), **fields)

    def failed(self, kind: ErrorKind, message: str) -> AttemptOutcome:
        """A failure `message`, with the last line the process wrote to stderr as its reason."""
        reason = last_line(self.stderr_tail)
        return self.outcome(
            succeeded=False, error_kind=kind, message=f"{message}: {reason}" if reason else message
        )


def supervise_attempt(
    proc: subprocess.Popen[bytes],
    request: AttemptRequest,
    cancel: threading.Event,
    *,
    logs: PipedLogs,
    started: float,
    what_was_killed: str,
) -> tuple[Exited, AttemptOutcome | None]:
    """Wait for an attempt's process group (blocks), then for its `logs` to be complete; its
    details, and its outcome if it was stopped (timed out or cancelled). None means it exited
    by itself: the caller judges it.
    """
    try:
        end = supervise(proc, timeout=request.timeout, cancel=cancel, grace=request.kill_grace)
    finally:
        logs.finish()
    exited = Exited(
        stdout_tail=read_tail(os.path.join(request.output_dir, STDOUT_FILE), request.tail_bytes),
        stderr_tail=read_tail(os.path.join(request.output_dir, STDERR_FILE), request.tail_bytes),
        exit_code=end.returncode,
        pid=proc.pid,
        started_at=started,
    )
    if end.ending is Ending.TIMED_OUT:
        return exited, exited.outcome(
            succeeded=False,
            error_kind=ErrorKind.TIMEOUT,
            message=f"timed out after {request.timeout:g} s; {what_was_killed} was killed",
        )
    if end.ending is Ending.CANCELLED:
        return exited, cancelled_outcome(**msgspec.structs.asdict(exited))
    return exited, None
