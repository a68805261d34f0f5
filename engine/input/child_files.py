"""Child workflow files: a step's `workflow: path/to/child.yaml`, read when its parent is.

A reference that ends in a workflow file suffix (.yaml, .yml, .json, .toml) is a
path relative to the file that names it. Each is read, its own children in turn,
and stored in the parent spec's `workflows` under the reference as written, so
that the run's stored spec holds everything it runs and a run never reads a
child file again (resume, recovery and replay work from the log alone). A file
that names itself, directly or through its children, is a cycle and refused.
Other references are names, resolved from `workflows:` itself or, in the
Python API, from the workflows registered with the engine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import msgspec

from engine.input.formats import FORMATS
from engine.input.loading import load_workflow_partly
from engine.rules.errors import Problem, ValidationError
from engine.rules.spec import WorkflowSpec


def is_file_reference(ref: str) -> bool:
    """Does this `workflow:` name a file (by its suffix) rather than a workflow name?"""
    return Path(ref).suffix.lower() in FORMATS


def load_with_children(
    path: str | os.PathLike[str], _stack: tuple[Path, ...] = ()
) -> tuple[WorkflowSpec | None, list[Problem]]:
    """`load_workflow_partly` of `path`, with every child file it names read and stored
    in its `workflows`; a child's problems are reported at the step that names it."""
    spec, problems = load_workflow_partly(path)
    here = Path(os.path.realpath(path))  # never raises, not even for a symlink loop
    if spec is None:
        return spec, problems
    found = dict(spec.workflows)
    for position, step in enumerate(spec.steps):
        ref = step.workflow
        if ref is None or not is_file_reference(ref) or ref in found:
            continue
        where = f"$.steps[{position}].workflow"
        target = Path(os.path.realpath(here.parent / ref))
        if target in (*_stack, here):
            chain = " -> ".join(p.name for p in (*_stack, here, target))
            problems.append(
                Problem(
                    where,
                    f"workflow `{ref}` includes itself ({chain})",
                    "a child workflow may not run its parent or itself; break the cycle",
                )
            )
            continue
        try:
            child, inner = load_with_children(target, (*_stack, here))
        except ValidationError as exc:
            child, inner = None, list(exc.problems)
        problems += [
            Problem(where, f"in `{ref}`: {p.location}: {p.message}", p.hint) for p in inner
        ]
        if child is not None and not inner:
            found[ref] = child
    if found != spec.workflows:
        spec = msgspec.structs.replace(spec, workflows=found)
    return spec, problems


def with_registered(
    spec: WorkflowSpec, registered: Mapping[str, WorkflowSpec], _parents: tuple[str, ...] = ()
) -> WorkflowSpec:
    """`spec` with every `workflow:` name that it does not hold itself taken from
    `registered` (the Python API's `Engine.register`), its children's too. A name that
    would run a parent again is left for validation to report as a cycle."""
    names = (*_parents, spec.name)
    found = {
        ref: with_registered(child, registered, names) for ref, child in spec.workflows.items()
    }
    for step in spec.steps:
        ref = step.workflow
        if ref is not None and ref not in found and ref in registered and ref not in names:
            found[ref] = with_registered(registered[ref], registered, names)
    return spec if found == spec.workflows else msgspec.structs.replace(spec, workflows=found)
