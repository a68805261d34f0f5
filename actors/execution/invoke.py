"""Load and call a `call` step's function, and turn what it did into a `CallResult`.

Shared by both isolations: `invoke_call` runs in a daemon thread of the engine
(isolation `thread`) or in the main thread of a child process (isolation
`process`, see call_runner.py). It never raises.

A function may also be `async def`; called here, its coroutine runs as a task
on this thread's step loop (step_loop.py), cancelled when `ctx.cancelled` is
set. (An agent of the engine's process runs them on its own loop instead,
agent_loop.py, with `finish_call` turning what the task did into a result.)
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from actors.context import StepContext
from actors.execution.attempt import AttemptRequest, OutputsError
from actors.execution.capture import AttemptOutput, captured, current_output
from actors.execution.classify import classify_exception, describe_exception
from actors.execution.step_loop import run_on_step_loop
from actors.execution.steps_view import StepsView, private_copy
from engine.rules.errors import ErrorKind
from engine.rules.values import unstorable

__all__ = [
    "AttemptLogger",
    "CallResult",
    "attempt_logger",
    "call_logged",
    "encode_outputs",
    "extend_import_path",
    "finish_call",
    "invoke_call",
    "load_function",
    "make_context",
]

_ALLOWED = "dict, list, str, number, bool, None or a msgspec Struct"


class CallResult(msgspec.Struct, frozen=True, kw_only=True):
    """What calling a step function produced; crosses from the child process as msgpack."""

    succeeded: bool
    outputs_json: bytes = b""  # the outputs, JSON-encoded, when succeeded
    error_kind: ErrorKind | None = None
    message: str = ""


class CallLoadError(Exception):
    """The `module:function` of a call step cannot be imported; the message says why.

    `kind` is `definition` when the workflow names something that is not there
    (no such module or attribute, not callable): no retry can fix that. A module
    whose own code raised while importing is classified by what it raised.
    """

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.DEFINITION) -> None:
        super().__init__(message)
        self.kind = kind


def invoke_call(request: AttemptRequest, ctx: StepContext, output: AttemptOutput) -> CallResult:
    """Import `request.call`, call it with `ctx` and encode its return value.

    Blocks the calling thread for as long as the function runs. Tracebacks of
    failures go to the attempt's stderr.
    """
    assert request.call is not None
    try:
        value = load_function(request.call, request.code_dir)(ctx)
        if inspect.iscoroutine(value):
            value = run_on_step_loop(value, ctx.cancelled, current_output())
    except BaseException as exc:  # the step's failure, whatever it is, is data
        return finish_call(output, None, exc, request.max_output_bytes)
    return finish_call(output, value, None, request.max_output_bytes)


def finish_call(
    output: AttemptOutput, value: Any, error: BaseException | None, limit: int
) -> CallResult:
    """The result of a call that returned `value` or raised `error` (its traceback
    goes to the attempt's stderr); outputs over `limit` bytes fail."""
    if error is not None:
        _write_traceback(output, error)
        if isinstance(error, CallLoadError):
            return CallResult(succeeded=False, error_kind=error.kind, message=str(error))
        return CallResult(
            succeeded=False, error_kind=classify_exception(error), message=describe_exception(error)
        )
    try:
        data = encode_outputs(value, limit)
    except OutputsError as exc:
        return CallResult(succeeded=False, error_kind=ErrorKind.OUTPUT, message=str(exc))
    return CallResult(succeeded=True, outputs_json=data)


def load_function(call: str, code_dir: str | None = None) -> Callable[[StepContext], Any]:
    """Import "module:function" (the function may be dotted: "module:Class.method").

    Modules are found on `sys.path`, then in `code_dir` (the workflow file's
    directory) and the working directory, appended after everything else so
    that user code never shadows our own packages or anything installed.
    """
    module_name, sep, attr_path = call.partition(":")
    if not sep or not module_name or not attr_path:
        raise CallLoadError(f"cannot import {call!r}: expected the form module:function")
    extend_import_path(code_dir, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        kind = ErrorKind.DEFINITION if isinstance(exc, ImportError) else classify_exception(exc)
        raise CallLoadError(
            f"cannot import module {module_name!r} for {call!r}: {describe_exception(exc)}", kind
        ) from exc
    target: Any = module
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CallLoadError(
                f"cannot import {call!r}: {type(target).__name__} "
                f"{getattr(target, '__name__', module_name)!r} has no attribute {part!r}"
            ) from None
    if not callable(target):
        raise CallLoadError(
            f"cannot call {call!r}: it is not callable (its type is {type(target).__name__})"
        )
    fn: Callable[[StepContext], Any] = target
    return fn


_PATH_LOCK = threading.Lock()
_SPELLED_OTHERWISE: set[str] = set()  # on sys.path under another spelling ("" for the cwd)


def extend_import_path(*directories: str | None) -> None:
    """Append each directory to `sys.path` unless it is there already (process-wide).

    Modules are cached by name for the whole process: two workflows whose
    directories each hold a `steps.py` share the first one imported (run them
    on an agent with `isolation: process` to keep them apart).
    """
    wanted = [d for d in directories if d and d not in sys.path and d not in _SPELLED_OTHERWISE]
    if not wanted:
        return
    with _PATH_LOCK:
        present = {os.path.abspath(p or os.curdir) for p in sys.path}
        for directory in wanted:
            path = os.path.abspath(directory)
            if path in present:
                _SPELLED_OTHERWISE.add(directory)
            else:
                sys.path.append(path)
                present.add(path)


def _mapping_as_dict(value: Any) -> Any:
    """Read-only mappings (such as `ctx.steps`) are returned as plain objects."""
    if isinstance(value, Mapping):
        return dict(value)
    raise NotImplementedError(f"objects of type {type(value).__name__} are not supported")


def encode_outputs(value: Any, limit: int) -> bytes:
    """`value` as JSON bytes of at most `limit` bytes; raises OutputsError otherwise."""
    try:
        plain = msgspec.to_builtins(value, enc_hook=_mapping_as_dict)
        data = msgspec.json.encode(plain)
    except Exception as exc:
        raise OutputsError(
            f"the return value (a {type(value).__name__}) cannot be serialised as outputs: "
            f"{exc}; return {_ALLOWED}"
        ) from exc
    if why := unstorable(plain):
        raise OutputsError(f"the return value {why[0]}: {why[1]}")
    if len(data) > limit:
        raise OutputsError(
            f"outputs are {len(data)} bytes as JSON, more than the limit of {limit} bytes; "
            "write large results to a file and return its path"
        )
    return data


def call_logged(
    request: AttemptRequest,
    cancelled: threading.Event,
    output: AttemptOutput,
    *,
    private_copies: bool,
) -> CallResult:
    """Call `request.call` on this thread with its context, writing to `output` (closed
    when it returns); never raises.

    `cancelled` becomes `ctx.cancelled`; `private_copies` as for `make_context`.
    `ctx.logger` and a failure's traceback go to the attempt's stderr; when `output`
    writes to the attempt's files (a thread of the engine) so do this thread's prints
    (see capture.py). The output directory is made only if something is written."""
    logger = attempt_logger(request.step_id, output)
    try:
        ctx = make_context(request, cancelled, logger, private_copies=private_copies)
        if not output.to_files:  # a process-isolated child: fds 1 and 2 are the attempt's
            return invoke_call(request, ctx, output)
        with captured(output):
            return invoke_call(request, ctx, output)
    finally:
        logger.close()
        output.close()


def make_context(
    request: AttemptRequest,
    cancelled: threading.Event,
    logger: logging.Logger,
    *,
    private_copies: bool,
) -> StepContext:
    """The `StepContext` for `request`; with `private_copies`, the function gets its own data."""
    convert = private_copy if private_copies else _same
    return StepContext(
        run_id=request.run_id,
        step_id=request.step_id,
        attempt=request.attempt,
        agent=request.agent,
        idempotency_key=request.idempotency_key,
        inputs=convert(request.inputs),
        params=convert(request.params),
        steps=StepsView(request.steps, request.step_calls, request.code_dir, copy=private_copies),
        item=convert(request.item),
        cancelled=cancelled,
        logger=logger,
    )


def attempt_logger(step_id: str, output: AttemptOutput) -> AttemptLogger:
    """A logger named `wfa.step.<step_id>` for one attempt, writing to its stderr.

    The logger is not registered with `logging` (concurrent attempts of one
    step each get their own, with their own file); its parent is the
    registered `wfa.step.<step_id>` logger, so records also propagate to
    whatever handlers the application configured. It logs INFO and above, or
    lower if the application set a lower level. The caller closes it once the
    function has returned.
    """
    name = f"wfa.step.{step_id}"
    shared = logging.getLogger(name)
    return AttemptLogger(name, min(shared.getEffectiveLevel(), logging.INFO), shared, output)


_LOG_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


class AttemptLogger(logging.Logger):
    """An attempt's `ctx.logger`: its handler is made on the first record.

    Most steps never log, and building a handler and formatter for every
    attempt was a tenth of the engine's per-step work.
    """

    def __init__(
        self, name: str, level: int, parent: logging.Logger, output: AttemptOutput
    ) -> None:
        super().__init__(name, level)
        self.parent = parent
        self._output = output
        self._handler: _AttemptLogHandler | None = None
        self._handler_lock = threading.Lock()
        self._closed = False

    def handle(self, record: logging.LogRecord) -> None:
        if self._handler is None:
            with self._handler_lock:
                if self._handler is None and not self._closed:
                    self._handler = _AttemptLogHandler(self._output)
                    self._handler.setFormatter(_LOG_FORMAT)
                    self.addHandler(self._handler)
        super().handle(record)

    def close(self) -> None:
        """Stop writing to the attempt's output (records after this go to the parent only)."""
        with self._handler_lock:
            self._closed = True
            if self._handler is not None:
                self.removeHandler(self._handler)


class _AttemptLogHandler(logging.Handler):
    """Writes records to the attempt's stderr (silent once the output is closed)."""

    def __init__(self, output: AttemptOutput) -> None:
        super().__init__()
        self._output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._output.write("stderr", self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _write_traceback(output: AttemptOutput, exc: BaseException) -> None:
    with contextlib.suppress(OSError):  # the outcome still carries the message
        output.write("stderr", "".join(traceback.format_exception(exc)))


def _same(value: Any) -> Any:
    return value
