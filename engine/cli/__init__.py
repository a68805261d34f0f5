"""The `wfa` command line: the group, its options and `validate` live in engine/cli/app.py.

Each command module registers its commands on `main` when imported, and
`main` imports a command's module the first time the command is looked up
(`COMMANDS` in app.py names them), so `wfa runs` loads only the read commands.
The command modules import `main` from engine.cli.app, never from this
package, so there is no import circle.
"""

from __future__ import annotations

from engine.cli.app import main

__all__ = ["main"]
