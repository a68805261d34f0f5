"""Python steps for the live agent tests (imported by path from workflow files)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from engine import StepContext


def pause(ctx: StepContext) -> dict[str, Any]:
    """Sleeps `ms` milliseconds; says which agent ran it."""
    time.sleep(ctx.params.get("ms", 0) / 1000)
    return {"agent": ctx.agent}


def crash_unless(ctx: StepContext) -> dict[str, Any]:
    """Kills its own process (kind `agent` under process isolation) unless on agent `ok`."""
    if ctx.agent != ctx.params["ok"]:
        os._exit(3)
    return {"agent": ctx.agent}


def crash_first(ctx: StepContext) -> dict[str, Any]:
    """Kills its own process the first `n` times it runs (a counter file remembers)."""
    counter = Path(ctx.params["counter"])
    with counter.open("a") as f:
        f.write(f"{ctx.attempt} {ctx.agent}\n")
    if len(counter.read_text().splitlines()) <= ctx.params["n"]:
        os._exit(3)
    return {"attempt": ctx.attempt}


def record(ctx: StepContext) -> dict[str, Any]:
    """A side effect (a line in `log`) and outputs derived from the params."""
    with open(ctx.params["log"], "a") as f:
        f.write(f"{ctx.run_id}\n")
    return {"value": ctx.params["value"] * 2}


def wait_for(ctx: StepContext) -> None:
    """Blocks until the file `path` exists (or `ctx.cancelled`)."""
    path = Path(ctx.params["path"])
    while not path.exists() and not ctx.cancelled.is_set():
        time.sleep(0.02)


def deaf(ctx: StepContext) -> None:
    """Ignores `ctx.cancelled`: returns only once the file `path` exists."""
    path = Path(ctx.params["path"])
    while not path.exists():
        time.sleep(0.02)


async def async_where(ctx: StepContext) -> dict[str, Any]:
    """Says which thread and loop ran it."""
    await asyncio.sleep(0)
    return {"thread": threading.current_thread().name, "loop": id(asyncio.get_running_loop())}


async def async_until_cancelled(ctx: StepContext) -> None:
    """Sleeps a minute; writes "cancelled" to the file `marker` once the task is cancelled."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        Path(ctx.params["marker"]).write_text("cancelled")
        raise


async def async_blocks(ctx: StepContext) -> None:
    """Blocks its loop (no await) until the file `path` exists."""
    path = Path(ctx.params["path"])
    while not path.exists():
        time.sleep(0.02)


TASKS: list[weakref.ref[asyncio.Task[Any]]] = []


async def async_notes_its_task(ctx: StepContext) -> None:
    """Keeps a weak reference to the task that runs it in `TASKS`."""
    task = asyncio.current_task()
    assert task is not None
    TASKS.append(weakref.ref(task))


async def async_fails_first(ctx: StepContext) -> dict[str, Any]:
    """Fails (kind `user`) on its first attempt; returns its attempt number after."""
    await asyncio.sleep(0)
    if ctx.attempt == 1:
        raise ValueError("first attempt fails")
    return {"attempt": ctx.attempt}


async def async_stops_its_loop(ctx: StepContext) -> dict[str, Any]:
    """Stops the event loop it runs on, then returns once it runs again."""
    asyncio.get_running_loop().stop()
    await asyncio.sleep(0)
    return {"stopped": True}
