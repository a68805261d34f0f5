"""Step functions that the attempt-execution tests call as `tests.actors.execution_steps:<name>`."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import sys
import threading
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import msgspec

from actors.context import StepContext

# Contexts seen by thread-isolated steps, by idempotency key, so that a test can
# look at `ctx.cancelled` after the attempt returned.
SEEN: dict[str, StepContext] = {}
FINISHED: dict[str, threading.Event] = {}


class Report(msgspec.Struct, frozen=True):
    coverage: int
    files: tuple[str, ...]


class Widget:
    """Not serialisable."""


def returns_param(ctx: StepContext) -> Any:
    return ctx.params["value"]


def returns_struct(ctx: StepContext) -> Report:
    return Report(coverage=91, files=("a.py", "b.py"))


def returns_widget(ctx: StepContext) -> Any:
    return {"ok": [1, Widget()]}


def returns_big(ctx: StepContext) -> Any:
    return {"blob": "x" * ctx.params["size"]}


def returns_unstorable(ctx: StepContext) -> Any:
    """A whole number beyond 64 bits, or a float JSON has no spelling for ("nan", "inf")."""
    which = ctx.params["which"]
    return {"n": {"deep": [10**30]}} if which == "big" else {"ratio": float(which)}


def echo_context(ctx: StepContext) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "step_id": ctx.step_id,
        "attempt": ctx.attempt,
        "agent": ctx.agent,
        "idempotency_key": ctx.idempotency_key,
        "inputs": ctx.inputs,
        "params": ctx.params,
        "steps": ctx.steps,
        "item": ctx.item,
        "logger": ctx.logger.name,
        "cancelled": ctx.cancelled.is_set(),
        "pid": os.getpid(),
    }


def mutates_inputs(ctx: StepContext) -> None:
    ctx.inputs["added"] = True
    ctx.steps["up"]["outputs"]["n"] = 99


def logs(ctx: StepContext) -> None:
    ctx.logger.info("hello from %s", ctx.step_id)


async def async_step(ctx: StepContext) -> dict[str, str]:
    return {"mode": "async"}


def prints(ctx: StepContext) -> dict[str, int]:
    print("to stdout from the child")
    return {"pid": os.getpid()}


def prints_and_logs(ctx: StepContext) -> None:
    print("out 1")
    print("err 1", file=sys.stderr)
    ctx.logger.info("logged")
    print("err 2", file=sys.stderr, flush=True)
    print("out 2", flush=True)


def prints_for_a_while(ctx: StepContext) -> None:
    """Print while the test prints from another thread too."""
    for _ in range(20):
        print("from the step")
        time.sleep(0.01)


def environment(ctx: StepContext) -> dict[str, str]:
    return dict(os.environ)


def raises(ctx: StepContext) -> None:
    name = ctx.params["exception"]
    if name == "value":
        raise ValueError("bad input")
    if name == "refused":
        raise ConnectionRefusedError(111, "Connection refused")
    if name == "timeout":
        raise TimeoutError("timed out reading")
    if name == "wrapped":
        try:
            raise ConnectionResetError("reset by peer")
        except ConnectionResetError as exc:
            raise LibraryError("request failed") from exc
    if name == "http":
        raise urllib.error.HTTPError("http://x", 500, "Server Error", {}, None)  # type: ignore[arg-type]
    if name == "url":
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    if name == "memory":
        raise MemoryError()
    if name == "disk":
        raise OSError(errno.ENOSPC, "No space left on device")
    if name == "exit":
        raise SystemExit(4)
    raise AssertionError(f"unknown exception {name}")


class LibraryError(Exception):
    """Like requests.ConnectionError: not a builtin network error, but caused by one."""


def waits_until_cancelled(ctx: StepContext) -> str:
    SEEN[ctx.idempotency_key] = ctx
    FINISHED[ctx.idempotency_key] = finished = threading.Event()
    try:
        ctx.cancelled.wait(30)
        return "noticed"
    finally:
        finished.set()


def sleeps_in_process(ctx: StepContext) -> str:
    """Writes its PID to params["pid_file"], then sleeps, ignoring ctx.cancelled."""
    _write_pid(ctx.params["pid_file"])
    time.sleep(60)
    return "woke"


def stops_when_cancelled(ctx: StepContext) -> str:
    _write_pid(ctx.params["pid_file"])
    ctx.cancelled.wait(60)
    return "stopped"


def exits_hard(ctx: StepContext) -> None:
    os._exit(3)


def kills_itself(ctx: StepContext) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def leaves_a_fifo_for_its_result(ctx: StepContext) -> None:
    """In process isolation the runner's argv ends with the result file: make it a FIFO."""
    import sys

    os.mkfifo(sys.argv[-1])
    os._exit(0)


def logs_into_a_fifo(ctx: StepContext) -> dict[str, bool]:
    os.makedirs(ctx.params["dir"], exist_ok=True)
    os.mkfifo(os.path.join(ctx.params["dir"], "stderr.log"))  # where ctx.logger writes
    ctx.logger.info("nobody reads this")
    return {"ok": True}


not_callable = 42


def _write_pid(path: str) -> None:
    partial = path + ".partial"
    with open(partial, "w") as f:
        f.write(str(os.getpid()))
    os.replace(partial, path)


def prints_lines(ctx: StepContext) -> None:
    """Print `params.lines` numbered lines to stdout, and log one record per 100."""
    for i in range(ctx.params["lines"]):
        print(f"line {i}")
        if i % 100 == 0:
            ctx.logger.info("logged %d", i)


async def async_sleeps_until_cancelled(ctx: StepContext) -> None:
    """Sleep a minute; write `params.marker` once the task is cancelled."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        with open(ctx.params["marker"], "w") as f:
            f.write("cancelled")
        raise


async def async_prints(ctx: StepContext) -> dict[str, int]:
    """Print from the step's task and from a task it starts; return the loop's thread."""
    print("from the async step")

    async def child() -> None:
        print("from a task it started")

    await asyncio.create_task(child())
    return {"thread": threading.get_ident(), "loop": id(asyncio.get_running_loop())}


async def async_leaves_a_task(ctx: StepContext) -> None:
    """Start a task (by `params.how`) and return without awaiting it; it appends to
    the marker when cancelled."""

    async def lingers() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            with open(ctx.params["marker"], "a") as f:
                f.write("cancelled\n")
            raise

    starts: dict[str, Callable[[], asyncio.Future[Any]]] = {
        "create_task": lambda: asyncio.create_task(lingers()),
        "ensure_future": lambda: asyncio.ensure_future(lingers()),
        "gather": lambda: asyncio.gather(lingers(), lingers(), return_exceptions=True),
    }
    LINGERING.append(starts[ctx.params.get("how", "create_task")]())
    await asyncio.sleep(0)  # let it start


LINGERING: list[asyncio.Future[Any]] = []


async def async_raises(ctx: StepContext) -> None:
    await asyncio.sleep(0)
    raise ValueError("bad value from async")
