"""Each package's public surface is its `__all__`; importing it never depends on order."""

from __future__ import annotations

import subprocess
import sys

import engine


def test_engine_public_names_are_pinned() -> None:
    assert sorted(engine.__all__) == [
        "Engine",
        "ErrorKind",
        "Problem",
        "RunHandle",
        "RunResult",
        "StepContext",
        "StepResult",
        "UnknownRunError",
        "ValidationError",
        "Workflow",
        "WorkflowAutomatorError",
    ]
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_actors_can_be_imported_before_engine_in_a_fresh_interpreter() -> None:
    code = "import actors.workflow, actors.runtime, engine; engine.Engine"
    subprocess.run([sys.executable, "-c", code], check=True)


def loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after `statement`, beside the bare start's."""
    code = f"import sys; before = set(sys.modules); {statement}; print(*set(sys.modules) - before)"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(done.stdout.split())


def test_import_engine_loads_only_the_package_until_a_name_is_used() -> None:
    assert {m for m in loaded_after("import engine") if m.startswith("engine")} == {"engine"}
    used = loaded_after("import engine; engine.ValidationError")
    assert "engine.rules.errors" in used and "engine.input.loading" not in used


def test_the_rules_load_no_file_loader_no_store_and_no_actor() -> None:
    for statement in ("import engine.rules.errors", "import engine.rules.decide"):
        loaded = loaded_after(statement)
        tops = {m.split(".")[0] for m in loaded}
        assert not tops & {"yaml", "cel", "lmdb", "psutil", "pykka", "actors", "eventstore"}
        assert not {m for m in loaded if m.startswith(("engine.input", "engine.cli"))}
