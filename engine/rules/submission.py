"""Idempotent submission (and the check of a signal's shape, the other thing a caller
names from outside): a caller-chosen run id names one run, whoever submits it.

`submit(..., run_id="order-123")` makes the run's id exactly that string. The
run stream's first append is conditional (expected version 0), so when several
processes submit one id at once the log's single writer lets exactly one
`RunSubmitted` in; every other submitter then reads it back and gets that run,
provided it asked for the same workflow and inputs. Asking for something else
under an existing id is an error naming the difference, never a second run.
"""

from __future__ import annotations

import re
from typing import Any, Final

import msgspec

from engine.rules.errors import Problem, ValidationError
from engine.rules.events import RunSubmitted
from engine.rules.spec import WorkflowSpec
from engine.rules.values import unloggable

RUN_ID_RULE: Final = "letters, digits, _ . -; starts with a letter or digit; 1-100 chars"
_RUN_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
"""No `/` or `:` (run ids name streams, files and `<run_id>:<step_id>` keys), no spaces."""


def check_run_id(run_id: str) -> None:
    """Raise ValidationError unless `run_id` follows RUN_ID_RULE."""
    if not isinstance(run_id, str) or _RUN_ID.fullmatch(run_id) is None:
        raise ValidationError(
            [Problem("--id", f"run id {run_id!r} is not valid: use {RUN_ID_RULE}")],
            source=str(run_id),
        )


def submission_difference(
    existing: RunSubmitted, spec: WorkflowSpec, inputs: dict[str, Any]
) -> list[str]:
    """How a new submission under `existing.run_id` differs from it; [] if it is the same."""
    found: list[str] = []
    if existing.spec.name != spec.name:
        found.append(f"workflow {existing.spec.name!r}, not {spec.name!r}")
    elif existing.spec != spec:
        fields = [
            f
            for f in msgspec.structs.fields(WorkflowSpec)
            if getattr(existing.spec, f.name) != getattr(spec, f.name)
        ]
        found.append(
            f"workflow {spec.name!r} whose {', '.join(f.encode_name for f in fields)} differ"
        )
    old = msgspec.to_builtins(existing.inputs)
    new = msgspec.to_builtins(inputs)
    for name in sorted(old.keys() | new.keys()):
        was, now = old.get(name, _MISSING), new.get(name, _MISSING)
        if was != now:
            found.append(f"input {name} = {_show(was)}, not {_show(now)}")
    return found


def same_submission(existing: RunSubmitted, spec: WorkflowSpec, inputs: dict[str, Any]) -> None:
    """Raise ValidationError naming the differences if this is not `existing` again."""
    differences = submission_difference(existing, spec, inputs)
    if differences:
        raise ValidationError(
            [
                Problem(
                    "--id",
                    f"run {existing.run_id} already exists as {d}",
                    "choose another run id, or submit the same workflow and inputs",
                )
                for d in differences
            ],
            source=existing.run_id,
        )


_MISSING: Final = object()
_SIGNAL: Final = re.compile(r"[A-Za-z0-9_-]{1,100}")


def signal_problems(name: str, data: object) -> list[Problem]:
    """A signal's name follows the step id rule; its data is a JSON object (or None)."""
    problems = []
    if not isinstance(name, str) or _SIGNAL.fullmatch(name) is None:
        problems.append(
            Problem("NAME", f"signal name {name!r} is not valid: letters, digits, _ -; 1-100 chars")
        )
    if data is not None and not isinstance(data, dict):
        problems.append(
            Problem("--data", f"signal data must be a JSON object, not {type(data).__name__}")
        )
    elif why := unloggable(data):
        problems.append(Problem("--data", f"signal data {why[0]}", why[1]))
    return problems


def _show(value: Any) -> str:
    return "(not given)" if value is _MISSING else msgspec.json.encode(value).decode()
