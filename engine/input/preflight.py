"""Checks of a valid workflow against this machine: can its code and programs be found?

Unlike engine/input/validation.py these look outside the spec (the import path, PATH,
the file system), so they are separate and their findings are warnings by
default: a `call:` module may exist only where the engine runs, a program may be
installed later. `wfa validate --imports` makes `call:` modules an error and
imports them, which runs their top-level code: a workflow file is code.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from engine.rules.errors import Problem
from engine.rules.spec import WorkflowSpec


def call_problems(
    spec: WorkflowSpec, workflow_dir: str | os.PathLike[str], *, load: bool = False
) -> list[Problem]:
    """Each `call:` whose module cannot be found from the workflow file's directory or
    the working directory; with `load`, also each that does not import or lacks its
    function."""
    problems: list[Problem] = []
    with _import_path([str(workflow_dir), os.getcwd()]):
        for position, step in enumerate(spec.steps):
            if step.call is None:
                continue
            module, _, name = step.call.partition(":")
            problem = _check_call(module, name, load)
            if problem:
                problems.append(Problem(f"$.steps[{position}].call", *problem))
    return problems


def run_problems(spec: WorkflowSpec) -> list[Problem]:
    """Each `run:` whose program is neither on PATH nor an existing path."""
    problems: list[Problem] = []
    for position, step in enumerate(spec.steps):
        if not step.run or "${{" in step.run[0]:
            continue
        program = step.run[0]
        if shutil.which(program) is None and not Path(program).exists():
            problems.append(
                Problem(
                    f"$.steps[{position}].run[0]",
                    f"program `{program}` is not on PATH",
                    "install it, or name it by its path",
                )
            )
    return problems


def _check_call(module: str, name: str, load: bool) -> tuple[str, str] | None:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package is missing or broken
        found = None
    if found is None:
        return (
            f"module `{module}` cannot be found",
            "put it next to the workflow file or in the working directory, or install it",
        )
    if not load:
        return None
    try:
        loaded = importlib.import_module(module)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return f"module `{module}` fails to import: {type(exc).__name__}: {exc}", "fix the module"
    target: object = loaded
    for part in name.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        return f"`{module}` has no function `{name}`", "check the function's name"
    return None


@contextmanager
def _import_path(directories: Sequence[str]) -> Iterator[None]:
    """`directories` first on sys.path for the duration (the CLI process is short-lived,
    but the engine API may call this too, so restore it)."""
    saved = list(sys.path)
    sys.path[:0] = [d for d in directories if d not in sys.path]
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved
