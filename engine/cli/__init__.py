"""The `wfa` command line: the group and its options live in engine/cli/app.py.

Each command module registers its commands on `main` when imported; importing
them here, and nowhere else, is what puts every command on the group. The
command modules import `main` from engine.cli.app, never from this package,
so there is no import circle.
"""

from __future__ import annotations

from engine.cli import (  # noqa: F401  (imported for their commands)
    check,
    inspect,
    logs,
    observe,
    retention,
    runs,
    serve,
    signal,
)
from engine.cli.app import main

__all__ = ["main"]
