"""The event loop an agent runs its `async def` call steps on, in a thread of its own.

A thread-isolated `call` step whose function is `async def` runs as a task on
its agent's loop, as an asyncio application runs its handlers: the workflow
actor hands the attempt to the loop (`AgentLoop.start`, no step actor), the
loop starts the task at once and reports the outcome when it ends. One loop
thread serves every async attempt of the agent, so a busy agent wakes one
thread for many attempts where sync steps wake a step actor each.

As in any asyncio application, a coroutine that blocks (`time.sleep` in
`async def`) holds up every async step of its agent until it returns. A
cancel (or the engine's timeout) cancels the task; tasks a step started and
left running when it returned are cancelled then, and its outcome is reported
once they have ended (as `asyncio.run` does).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from actors.execution.attempt import (
    KILL_GRACE_SECONDS,
    AttemptOutcome,
    AttemptRequest,
    cancelled_outcome,
    failed_outcome,
)
from actors.execution.call_thread import outcome_from_result
from actors.execution.capture import AttemptOutput, routed_here
from actors.execution.invoke import (
    CallLoadError,
    attempt_logger,
    finish_call,
    load_function,
    make_context,
)
from actors.execution.step_loop import cancel_leftovers, note_started_tasks, step_context
from engine.rules.errors import ErrorKind

__all__ = ["AgentLoop", "is_async_call"]

log = logging.getLogger(__name__)

Report = Callable[[AttemptOutcome], None]

STOP_WAIT = KILL_GRACE_SECONDS
"""How long stopping an agent waits for its async steps' cancelled tasks to end, seconds:
the grace a process group has between SIGTERM and SIGKILL."""


def is_async_call(request: AttemptRequest, *, may_import: bool) -> bool:
    """The step is a thread-isolated call of an `async def` function.

    Unless it `may_import` (a workflow actor's thread must not wait for a user's
    module to import), a function whose module is not imported yet is not known to
    be one. A function that cannot be loaded is not one: the step actor's path
    reports why."""
    if request.call is None or request.isolation != "thread":
        return False
    module_name, _, attr_path = request.call.partition(":")
    target: Any = sys.modules.get(module_name)
    if target is None:
        if not may_import:
            return False
        try:
            target = load_function(request.call, request.code_dir)
        except CallLoadError:
            return False
    else:
        for part in attr_path.split("."):
            target = getattr(target, part, None)
    return inspect.iscoroutinefunction(target)


class AgentLoop:
    """One agent's event loop thread, started on its first async attempt.

    Attempts handed over while the loop is busy wait in a list that its next
    pass takes whole: one wake-up of the loop's thread starts all of them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._handed: list[tuple[Hashable, AttemptRequest, threading.Event, Report]] = []
        self._tasks: dict[Hashable, asyncio.Task[Any]] = {}  # on the loop's thread only

    def start(
        self, key: Hashable, request: AttemptRequest, cancel: threading.Event, report: Report
    ) -> None:
        """Start the attempt on the loop (any thread); `report` gets its outcome there
        (or here, as cancelled, once the loop has been stopped)."""
        with self._lock:
            if self._stopped:
                loop = None
            else:
                if self._loop is None:
                    self._loop = self._new_loop()
                self._handed.append((key, request, cancel, report))
                if len(self._handed) > 1:
                    return  # the loop has been woken and has not taken them yet
                loop = self._loop
        if loop is None or not _post(loop, self._take):
            report(cancelled_outcome(time.time()))

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        loop.set_task_factory(note_started_tasks)
        self._thread = threading.Thread(
            target=self._serve, args=(loop,), name=f"wfa-async-{self.name}", daemon=True
        )
        self._thread.start()
        return loop

    def cancel(self, key: Hashable) -> None:
        """Cancel the attempt's task, if it still runs (any thread)."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            _post(loop, self._cancel, key)

    def stop(self) -> None:
        """Cancel every step's task, and stop the loop once they have ended (waiting
        at most `STOP_WAIT` seconds for a task that ignores its cancellation)."""
        with self._lock:
            self._stopped = True
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is not None and thread is not None and _post(loop, self._shut_down, loop):
            thread.join(STOP_WAIT)

    # -- on the loop's thread ------------------------------------------------

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the loop until `stop`, then close it: a step that stops it (`loop.stop()`)
        only makes it start again, instead of leaving every later async step unrun."""
        while True:
            loop.run_forever()
            with self._lock:
                if self._loop is not loop:
                    loop.close()
                    return

    def _shut_down(self, loop: asyncio.AbstractEventLoop) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        ended = asyncio.gather(*tasks, return_exceptions=True)
        ended.add_done_callback(lambda _: loop.stop())

    def _take(self) -> None:
        with self._lock:
            handed, self._handed = self._handed, []
        for key, request, cancel, report in handed:
            self._begin(key, request, cancel, report)

    def _cancel(self, key: Hashable) -> None:
        task = self._tasks.get(key)
        if task is not None:
            task.cancel()

    def _begin(
        self, key: Hashable, request: AttemptRequest, cancel: threading.Event, report: Report
    ) -> None:
        if cancel.is_set():
            report(cancelled_outcome(time.time()))
            return
        attempt = _OnLoop(request, report)
        try:
            ctx = make_context(request, cancel, attempt.logger, private_copies=True)
            assert request.call is not None
            coroutine = load_function(request.call, request.code_dir)(ctx)
        except Exception as exc:  # CallLoadError among them
            attempt.end(None, exc)
            return
        context, started = step_context()
        self._tasks[key] = asyncio.Task(
            self._run(key, attempt, coroutine, started), context=context
        )

    async def _run(
        self, key: Hashable, attempt: _OnLoop, coroutine: Any, started: set[asyncio.Task[Any]]
    ) -> None:
        """The step's task: the step, then its leftover tasks cancelled, then its report."""
        value, error = None, None
        try:
            value = await routed_here(coroutine, attempt.output)
        except BaseException as exc:  # the step's failure, cancellation among them, is data
            error = exc
        del self._tasks[key]
        if leftovers := cancel_leftovers(started):
            await asyncio.gather(*leftovers, return_exceptions=True)
        attempt.end(value, error)


class _OnLoop:
    """An attempt on the loop: where its output goes, and whom to tell how it ended."""

    __slots__ = ("logger", "output", "report", "request", "started")

    def __init__(self, request: AttemptRequest, report: Report) -> None:
        self.request = request
        self.report = report
        self.started = time.time()
        self.output = AttemptOutput(request.output_dir, request.max_log_bytes)
        self.logger = attempt_logger(request.step_id, self.output)

    def end(self, value: Any, error: BaseException | None) -> None:
        """Report the outcome of a call that returned `value` or raised `error`."""
        request = self.request
        try:
            try:
                result = finish_call(self.output, value, error, request.max_output_bytes)
            finally:
                self.logger.close()
                self.output.close()
            out, err = self.output.tails(request.tail_bytes)
            outcome = outcome_from_result(
                result, started=self.started, stdout_tail=out, stderr_tail=err
            )
        except Exception as exc:  # a bug here must not leave the step hanging
            log.exception("attempt %s of step %s crashed", request.attempt, request.step_id)
            outcome = failed_outcome(ErrorKind.AGENT, f"the agent failed: {exc!r}")
        self.report(outcome)


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> bool:
    """Have the loop call `callback(*args)`; False if it is closed (its agent has stopped)."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        return False
    return True
