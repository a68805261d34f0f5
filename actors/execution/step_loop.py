"""The event loop that runs `async def` step functions: one daemon thread per process.

`asyncio.run` per attempt built and tore down a loop for every attempt and gave
a timeout or a cancel no way to stop the coroutine. Here every async step of the
process (of all agents: thread-isolated calls, and the child of a
process-isolated one, which has its own) runs as a task on one shared loop, as
it would in an asyncio application; the attempt's thread waits for the task and
cancels it when `ctx.cancelled` is set (timeout or cancel; in a process-isolated
child, SIGTERM sets it, so the task is cancelled within the kill grace). A loop per agent
would isolate agents from an async step that blocks its loop (`time.sleep` in
`async def`), at the cost of a thread per agent and a choice of loop per
attempt; with one loop the price of such a step is the one asyncio users know.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any

from actors.execution.capture import AttemptOutput, routed_here

__all__ = ["run_on_step_loop"]

_WAIT_SLICE = 0.1  # how often the waiting thread looks at ctx.cancelled, seconds

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0  # a forked child (a Dask worker) has the variable but not the thread


def _step_loop() -> asyncio.AbstractEventLoop:
    global _loop, _loop_pid
    with _lock:
        if _loop is None or _loop_pid != os.getpid():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="wfa-async-steps", daemon=True).start()
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def run_on_step_loop(
    coroutine: Coroutine[Any, Any, Any], cancelled: threading.Event, output: AttemptOutput | None
) -> Any:
    """Run `coroutine` as a task on the shared loop to its end; blocks the calling thread.

    Its prints (and those of tasks it starts) go to `output`, if given, as the calling
    thread's would. Once `cancelled` is set the task is cancelled, and this still
    waits for it to end (a coroutine that ignores the cancellation runs on, as a
    sync function that ignores `ctx.cancelled` does); its result or exception is
    returned or raised here.
    """
    loop = _step_loop()
    ended = threading.Event()
    tasks: list[asyncio.Task[Any]] = []

    def start() -> None:  # on the loop
        task = loop.create_task(routed_here(coroutine, output))
        task.add_done_callback(lambda _: ended.set())
        tasks.append(task)

    loop.call_soon_threadsafe(start)
    cancelling = False
    while not ended.wait(_WAIT_SLICE):
        if cancelled.is_set() and not cancelling:
            cancelling = True  # queued after start(), so the task exists by then
            loop.call_soon_threadsafe(lambda: tasks[0].cancel())
    return tasks[0].result()
