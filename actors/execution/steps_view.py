"""`ctx.steps`: the run's other steps as one attempt sees them, plain or typed.

Read by id, `ctx.steps["api"]["outputs"]` is plain data, as the log holds it.
Read as an attribute, `ctx.steps.api.outputs` is typed: when the step's
function is annotated to return a msgspec Struct (`def api(ctx) -> Reply`),
its outputs are converted back into that Struct (a mismatch, such as outputs
a person gave with `wfa skip`, raises msgspec's error, naming the field). The
function is found by its `call` path, as the step itself was.

Entries are privately copied when first read (`copy`): a long run has many
upstream steps and a step reads few of them; copying all of them for every
attempt made a 1,000-step run quadratic.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import msgspec


class StepView(NamedTuple):
    """One step as `ctx.steps.<id>` shows it."""

    outputs: Any
    status: str


class StepsView(Mapping[str, Any]):
    """A read-only mapping of step id to `{"outputs", "status"}`, with typed attributes."""

    def __init__(
        self,
        source: Mapping[str, Any],
        calls: Mapping[str, str] | None = None,
        code_dir: str | None = None,
        *,
        copy: bool = True,
    ) -> None:
        self._source = source
        self._calls = calls or {}
        self._code_dir = code_dir
        self._copy = copy
        self._copies: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if not self._copy:
            return self._source[key]
        if key not in self._copies:
            self._copies[key] = private_copy(self._source[key])
        return self._copies[key]

    def __getattr__(self, name: str) -> StepView:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            entry = self[name]
        except KeyError:
            steps = ", ".join(sorted(self._source)) or "none"
            raise AttributeError(
                f"ctx.steps has no step {name!r}; steps of this run: {steps} "
                '(read an id with "-" as ctx.steps["the-id"])'
            ) from None
        outputs = entry["outputs"]
        returns = return_type(self._calls.get(name), self._code_dir)
        if returns is not None and outputs is not None:
            outputs = msgspec.convert(outputs, returns)
        return StepView(outputs, entry["status"])

    def __iter__(self) -> Iterator[str]:
        return iter(self._source)

    def __len__(self) -> int:
        return len(self._source)

    def __repr__(self) -> str:
        return repr(dict(self))


@functools.lru_cache(maxsize=256)
def return_type(call: str | None, code_dir: str | None) -> type[msgspec.Struct] | None:
    """The Struct the function at `call` is annotated to return, if it is one."""
    if call is None:
        return None
    from actors.execution.invoke import load_function  # invoke builds this view

    try:
        returns = typing.get_type_hints(load_function(call, code_dir)).get("return")
    except Exception:  # not importable here, or annotations that do not resolve: plain
        return None
    if isinstance(returns, type) and issubclass(returns, msgspec.Struct):
        return returns
    return None


def private_copy(value: Any) -> Any:
    """A copy of plain data that shares nothing with `value`."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    try:
        return msgspec.msgpack.decode(msgspec.msgpack.encode(value))
    except Exception:
        import copy

        return copy.deepcopy(value)
