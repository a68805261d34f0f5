"""Concurrency keys: at most `limit` running runs of one workflow share a key value.

A workflow's `concurrency: {key: "${{ inputs.customer }}", limit: 1}` renders
its key once from the run's inputs, so the key is a fact of `RunSubmitted`
(spec and inputs) and needs no event of its own. Which runs hold a slot is
also a fact of the log: a run holds one from its `RunStarted` until its end.
That is why the limit holds across a restart: recovery counts the runs that
had started, and admits them first (`admissible`), before any queued run of
their key.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from engine.rules.expressions import render_template
from engine.rules.spec import WorkflowSpec

__all__ = ["Candidate", "ConcurrencyKey", "admissible", "concurrency_key"]

_ONE_INPUT = re.compile(r"^\$\{\{\s*inputs\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


class ConcurrencyKey(msgspec.Struct, frozen=True):
    """A run's rendered key: runs of `workflow` with the same `value` share `limit` slots."""

    workflow: str
    value: str
    limit: int
    label: str  # for people: "customer=acme"

    @property
    def group(self) -> tuple[str, str]:
        return (self.workflow, self.value)


def concurrency_key(spec: WorkflowSpec, inputs: Mapping[str, Any]) -> ConcurrencyKey | None:
    """The run's key, rendered from its inputs (defaults applied); None without `concurrency`.

    The label names the input when the key is exactly one `${{ inputs.NAME }}`
    ("customer=acme"), else it is "key=VALUE"."""
    if spec.concurrency is None:
        return None
    values = {**{k: v for k, v in spec.inputs.items() if v is not None}, **inputs}
    value = render_template(spec.concurrency.key, {"inputs": values})
    one = _ONE_INPUT.match(spec.concurrency.key.strip())
    name = one.group(1) if one else "key"
    return ConcurrencyKey(spec.name, value, spec.concurrency.limit, f"{name}={value}")


class Candidate(msgspec.Struct, frozen=True):
    """A run the scheduler could admit: its key (None: no limit) and whether it had
    started before (it holds its slot already: the log says so)."""

    run_id: str
    key: ConcurrencyKey | None = None
    started: bool = False


def admissible(
    queue: Sequence[Candidate], running: Sequence[ConcurrencyKey | None], free: int
) -> list[str]:
    """Which queued runs start now, at most `free`, taken in queue order.

    Runs that had started come first (they hold their slot); a run whose key
    already has `limit` running runs is passed over and keeps its place, so
    runs of one key start in queue order and other keys are not held up."""
    counts: Counter[tuple[str, str]] = Counter(k.group for k in running if k is not None)
    chosen: list[str] = []
    ordered = [c for c in queue if c.started] + [c for c in queue if not c.started]
    for candidate in ordered:
        if len(chosen) >= free:
            break
        key = candidate.key
        if key is not None and not candidate.started and counts[key.group] >= key.limit:
            continue
        if key is not None:
            counts[key.group] += 1
        chosen.append(candidate.run_id)
    return chosen
