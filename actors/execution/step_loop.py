"""An event loop per thread that runs `async def` step functions on that thread.

`asyncio.run` per attempt built and tore down a loop for every attempt and gave
a timeout or a cancel no way to stop the coroutine. Here the thread that runs
the attempt keeps one event loop of its own, made on its first async step and
reused by every later one, and runs the step on it as a task, as an asyncio
application would; while the task runs, the loop looks at `ctx.cancelled`
every `_WAIT_SLICE` seconds and cancels the task once it is set (timeout or
cancel; in a process-isolated child, SIGTERM sets it, so the task is
cancelled within the kill grace). Tasks the step started and left running
when it returned are cancelled then, as `asyncio.run` does.

On an agent of the engine's own process, an `async def` step runs on the
agent's loop thread instead (agent_loop.py), which the workflow actor hands
it to without a step actor (it measured a little faster than this loop in
benchmarks/async_bench.py, and cancels a task at once). This loop serves the threads that run an
attempt themselves: the child of a process-isolated call, a Dask worker, and
a step actor whose function returned an awaitable without being `async def`.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any

from actors.execution.capture import AttemptOutput, routed_here

__all__ = ["cancel_leftovers", "note_started_tasks", "run_on_step_loop", "step_context"]

_WAIT_SLICE = 0.1  # how often the loop looks at ctx.cancelled, seconds

_this_thread = threading.local()

# The tasks started by the step whose task (or a task it started) runs now.
_started_by_step: contextvars.ContextVar[set[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "wfa_started_by_step", default=None
)


def note_started_tasks(
    loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
) -> asyncio.Task[Any]:
    """The task factory of a loop that runs steps: it notes each task a step starts in
    the set of its `step_context`, so that the step's leftovers are found when it ends.

    `asyncio.all_tasks(loop)` would find those too, but it walks every live task of
    every loop in the process, an embedding application's own among them (a web
    server's thousands), so that each async step would cost more the busier its host
    is. Noted: `create_task`, `ensure_future`, `gather`, `TaskGroup`; a task made by
    calling `asyncio.Task(...)` itself, which asyncio's documentation advises
    against, is not. The step's own task is made apart (in its `step_context`), so a
    step that starts none leaves nothing to look through."""
    task = asyncio.Task(coro, loop=loop, **kwargs)
    started = _started_by_step.get()
    if started is not None:
        started.add(task)
        task.add_done_callback(started.discard)
    return task


def step_context() -> tuple[contextvars.Context, set[asyncio.Task[Any]]]:
    """The context to run a step's task in, and the set the tasks it starts go to."""
    started: set[asyncio.Task[Any]] = set()
    context = contextvars.copy_context()
    context.run(_started_by_step.set, started)
    return context, started


def cancel_leftovers(started: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Cancel the tasks a step started and left running; the ones to wait for (as
    `asyncio.run` does) before its outcome is told."""
    leftovers = [t for t in started if not t.done()]
    for task in leftovers:
        task.cancel()
    return leftovers


def _step_loop() -> asyncio.AbstractEventLoop:
    """This thread's step loop (a thread forked into a child has a fresh `local`)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_this_thread, "step_loop", None)
    if loop is None or loop.is_closed():
        loop = _this_thread.step_loop = asyncio.new_event_loop()
        loop.set_task_factory(note_started_tasks)
    return loop


def run_on_step_loop(
    coroutine: Coroutine[Any, Any, Any], cancelled: threading.Event, output: AttemptOutput | None
) -> Any:
    """Run `coroutine` as a task on this thread's loop to its end, and return its result
    (or raise its exception).

    Its prints (and those of tasks it starts) go to `output`, if given, as the
    calling thread's would. Once `cancelled` is set the task is cancelled, and this
    still waits for it to end (a coroutine that ignores the cancellation runs on,
    as a sync function that ignores `ctx.cancelled` does).
    """
    loop = _step_loop()
    context, started = step_context()
    task = asyncio.Task(routed_here(coroutine, output), loop=loop, context=context)
    watch: list[asyncio.TimerHandle] = []
    if cancelled.is_set():
        task.cancel()
    try:
        # One pass of the loop first: a step that never suspends ends in it, and then
        # needs no watch on `cancelled` (`run_until_complete` alone takes two passes,
        # each polling the selector).
        loop.stop()
        loop.run_forever()
        if task.done():
            return task.result()
        _cancel_once_set(task, cancelled, watch)
        return loop.run_until_complete(task)
    finally:
        for handle in watch:
            handle.cancel()  # and so drops its arguments, which hold `watch`
        if leftovers := cancel_leftovers(started):
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))


def _cancel_once_set(
    task: asyncio.Task[Any], cancelled: threading.Event, watch: list[asyncio.TimerHandle]
) -> None:
    """Cancel `task` if `cancelled` is set, or look again in `_WAIT_SLICE` s (`watch`
    holds the timer). Not a closure: one that schedules itself is a reference cycle,
    which would keep every step's task and coroutine for the garbage collector."""
    if cancelled.is_set():
        task.cancel()
    else:
        timer = task.get_loop().call_later(_WAIT_SLICE, _cancel_once_set, task, cancelled, watch)
        watch[:] = [timer]
