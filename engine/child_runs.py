"""Whether a run waits only for people, its child runs included.

A parent that waits for a child run waits for whatever the child waits for:
when the child (or its own child) needs an approval, a signal or a decision,
so does its parent, and `wait()`, `wfa run` and the driving engine treat the
parent as quiet too, instead of following it for ever. Each child run is read
from the log here, once per question.
"""

from __future__ import annotations

from typing import Any

from engine.rules.events import run_stream
from engine.rules.results import HUMAN_WAITS, RunResult, result_of
from engine.rules.state import TERMINAL_RUN, fold

_CHILD = "child run "


def waits_for_people(store: Any, result: RunResult, _depth: int = 0) -> bool:
    """`result.needs_intervention`, where a wait for a child run counts as that child's."""
    if not result.waiting_for or _depth > 20:  # nesting deeper than this is a mistake
        return False
    for waiting in result.waiting_for:
        if waiting.split(" ", 1)[0] in HUMAN_WAITS and " until " not in waiting:
            continue
        if not waiting.startswith(_CHILD):
            return False
        child_id = waiting[len(_CHILD) :].split(" of ", 1)[0]
        records = list(store.read_stream(run_stream(child_id)))
        if not records:
            return False  # being submitted: it will move
        child = fold(r.event for r in records)
        if child.status in TERMINAL_RUN or not waits_for_people(
            store, result_of(child), _depth + 1
        ):
            return False
    return True
