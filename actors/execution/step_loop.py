"""The event loop that runs `async def` step functions: one per thread that runs steps.

`asyncio.run` per attempt built and tore down a loop for every attempt and gave
a timeout or a cancel no way to stop the coroutine. Here the thread that runs
the attempt (a step actor's, the child of a process-isolated call, a Dask
worker's) keeps one event loop of its own, made on its first async step and
reused by every later one, and runs the step on it as a task, as an asyncio
application would; while the task runs, the loop looks at `ctx.cancelled`
every `_WAIT_SLICE` seconds and cancels the task once it is set (timeout or
cancel; in a process-isolated child, SIGTERM sets it, so the task is
cancelled within the kill grace). Tasks the step started and left running
when it returned are cancelled then, as `asyncio.run` does.

Measured and chosen (benchmarks/async_bench.py, W2 with async beside sync
no-op steps): one loop thread shared by every async step of the process cost
two thread hand-offs per attempt (to the loop thread and back) and ran async
steps at 0.77 of the sync ones' rate; a loop on the attempt's own thread has
no hand-off and ran them at 0.83-0.98 (the README's Benchmarks). It also
isolates steps as sync steps are: an async step that blocks its loop
(`time.sleep` in `async def`) holds up only its own agent slot.
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


def _step_loop() -> asyncio.AbstractEventLoop:
    """This thread's loop (a thread forked into a child has a fresh `local`)."""
    loop: asyncio.AbstractEventLoop | None = getattr(_this_thread, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _this_thread.loop = loop
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
    task = loop.create_task(routed_here(coroutine, output))
    watch: list[asyncio.TimerHandle] = []

    def look() -> None:
        if cancelled.is_set():
            task.cancel()
        else:
            watch[:] = [loop.call_later(_WAIT_SLICE, look)]

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
        look()
        return loop.run_until_complete(task)
    finally:
        for handle in watch:
            handle.cancel()
        _cancel_leftovers(loop)


def _cancel_leftovers(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel the tasks the step left running, and let them end (as `asyncio.run`)."""
    leftovers = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
