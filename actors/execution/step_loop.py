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
import threading
from collections.abc import Coroutine
from typing import Any

from actors.execution.capture import AttemptOutput, routed_here

__all__ = ["run_on_step_loop"]

_WAIT_SLICE = 0.1  # how often the loop looks at ctx.cancelled, seconds

_this_thread = threading.local()


class _StepLoop:
    """A thread's event loop, and the tasks that steps started on it and may leave running.

    `asyncio.all_tasks(loop)` would find those too, but it walks every live task of
    every loop in the process, an embedding application's own among them (a web
    server's thousands), so that each async step would cost more the busier its
    host is. The loop's task factory notes each task a step starts instead
    (`create_task`, `ensure_future`, `gather`, `TaskGroup`; a task made by calling
    `asyncio.Task(...)` itself, which asyncio's documentation advises against, is
    not seen); the step's own task is made apart, so a step that starts none leaves
    nothing to look through.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.started: set[asyncio.Task[Any]] = set()
        self.loop.set_task_factory(self._task)

    def _task(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        self.started.add(task)
        task.add_done_callback(self.started.discard)
        return task


def _step_loop() -> _StepLoop:
    """This thread's step loop (a thread forked into a child has a fresh `local`)."""
    here: _StepLoop | None = getattr(_this_thread, "step_loop", None)
    if here is None or here.loop.is_closed():
        here = _this_thread.step_loop = _StepLoop()
    return here


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
    here = _step_loop()
    loop = here.loop
    task = asyncio.Task(routed_here(coroutine, output), loop=loop)
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
        _cancel_leftovers(here)


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


def _cancel_leftovers(here: _StepLoop) -> None:
    """Cancel the tasks the step left running, and let them end (as `asyncio.run`)."""
    leftovers = [t for t in here.started if not t.done()]
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    here.loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
