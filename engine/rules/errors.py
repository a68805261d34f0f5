"""The error hierarchy users catch, and the failure kinds retry policies match.

One root, `WorkflowAutomatorError`; every error says what happened, where, and
what to do next. Step failures are not exceptions but data: an `ErrorKind` and
a message recorded in the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import msgspec


class ErrorKind(StrEnum):
    """Why an attempt failed; retry policies (`on:`) match on it."""

    USER = "user"  # the step's own failure: non-zero exit, an exception
    TIMEOUT = "timeout"
    AGENT = "agent"  # the agent or its process died or is unavailable
    NETWORK = "network"  # connection errors raised by the step
    RESOURCE = "resource"  # no capacity that could ever fit
    DEPENDENCY = "dependency"
    OUTPUT = "output"  # outputs that cannot be serialised or are too large
    DEFINITION = "definition"  # the workflow itself is wrong; retried only if `on:` names it


class Problem(msgspec.Struct, frozen=True):
    """One thing wrong with an input, at a JSON-path-like location."""

    location: str  # "$.steps[3].after[0]"
    message: str  # what is wrong
    hint: str = ""  # what to do about it

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class WorkflowAutomatorError(Exception):
    """Root of every error this project raises on purpose."""


class ValidationError(WorkflowAutomatorError):
    """A workflow file, configuration or command is invalid; carries every problem."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{where}{p}" for p in self.problems]
        super().__init__("\n".join(lines) if lines else f"{where}invalid")


class ExpressionError(WorkflowAutomatorError):
    """A CEL expression failed to compile or to evaluate."""
