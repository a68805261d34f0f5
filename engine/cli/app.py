"""The `wfa` group and what its commands share (the README's Command line section).

One click group, `main`; each command module of this package registers its
commands on it and is imported when one of them is first looked up
(`COMMANDS`). Each command is a small function that uses the shared pieces
here: `CliState` (global options and the lazily loaded engine configuration),
`fail` (one `error: ...` line plus details on stderr, then an exit code), the
exit-code constants, `parse_since`, and `WfaGroup`, which turns any error a command lets
escape into that same one-line form, so bad input never shows a traceback.
The CLI, not the library, sets up logging output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import click
import msgspec

from engine.input.loading import load_config
from engine.input.preflight import call_problems, run_problems
from engine.input.validation import validate_config, validate_file
from engine.rules.config import EngineConfig
from engine.rules.errors import Problem, ValidationError, WorkflowAutomatorError
from engine.rules.state import InvalidTransition
from eventstore import CorruptEventError, CorruptStoreError, EventStoreError, StoreReadOnlyError

if TYPE_CHECKING:
    from engine.facade import Engine
    from engine.rules.results import RunResult

EXIT_OK = 0
EXIT_FAILED = 1  # a run failed, was cancelled or timed out
EXIT_BAD_INPUT = 2  # invalid workflow, config, command or run id
EXIT_PAUSED = 3  # a run waits for manual intervention
EXIT_INTERNAL = 70  # a bug in wfa (EX_SOFTWARE)
EXIT_INTERRUPTED = 130  # Ctrl-C while following: the run stays resumable
JSON_META = "wfa.json"  # the global --json, in click's context meta
BUG_HINT = "this is a bug in wfa; please report it with the output of `wfa -v ...`"
DAMAGE_ADVICE = (
    "restore the data directory from a backup; `wfa export` may still save the events",
    "before the damage, and `wfa check` lists what is damaged",
)


@dataclass
class CliState:
    """Global options, shared by every command through the click context."""

    data: Path | None = None
    config_path: Path | None = None
    verbose: int = 0
    _config: EngineConfig | None = field(default=None, repr=False)

    def config(self) -> EngineConfig:
        """The engine configuration with env overrides and --data; exits 2 when invalid."""
        if self._config is None:
            try:
                config = load_config(self.config_path, os.environ)
            except ValidationError as exc:
                fail(
                    f"invalid engine configuration {exc.source or ''}".rstrip(),
                    [str(p) for p in exc.problems],
                )
            problems = validate_config(config)
            if problems:
                fail(
                    f"invalid engine configuration {self.config_path or ''}".rstrip(),
                    [str(p) for p in problems],
                )
            if self.data is not None:
                config = msgspec.structs.replace(
                    config, storage=msgspec.structs.replace(config.storage, path=str(self.data))
                )
            self._config = config
        return self._config

    def engine(self, *, drive: bool = True, create: bool = True) -> Engine:
        """Open the data directory: driving it when `drive` and no other engine does.

        Read commands pass `create=False`, so a mistyped --data is an error, not a new
        empty directory.
        """
        from engine.facade import Engine  # brings in the actor runtime: only when needed

        config = self.config()
        return Engine(data_dir=config.storage.path, config=config, drive=drive, create=create)


pass_state = click.make_pass_decorator(CliState, ensure=True)


def fail(message: str, details: Iterable[str] = (), code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print `error: message` and indented details to stderr, then exit with `code`."""
    click.echo(f"error: {message}", err=True)
    for line in details:
        click.echo(f"  {line}", err=True)
    raise click.exceptions.Exit(code)


def print_json(value: Any) -> None:
    """Machine output: one JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def exit_code(results: Iterable[RunResult]) -> int:
    """The worst outcome: 1 if any run failed/cancelled/timed out, else 3 if any waits
    for a person, else 0."""
    code = EXIT_OK
    for result in results:
        if result.status in ("failed", "cancelled", "timed_out"):
            return EXIT_FAILED
        if result.needs_intervention or result.status != "succeeded":
            code = EXIT_PAUSED
    return code


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While following, SIGTERM acts like Ctrl-C: stop driving cleanly, not die mid-step."""

    def raise_interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted(engine: Engine, run_ids: Sequence[str]) -> NoReturn:
    """Ctrl-C while following: stop driving cleanly; the runs stay in the log, resumable."""
    drove = engine.drives
    holder = None if drove else engine.holder()
    engine.close()
    click.echo("", err=True)
    names = " ".join(run_ids)
    if holder is not None:
        click.echo(f"interrupted; the engine of {holder} continues the run", err=True)
    elif drove:
        click.echo(f"interrupted; the run stays resumable: wfa resume {names}", err=True)
    else:
        click.echo(f"interrupted; no engine drives the run: wfa resume {names}", err=True)
    raise click.exceptions.Exit(EXIT_INTERRUPTED)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str | None, now: float, option: str = "--since") -> float | None:
    """`--since`: a duration back from now (`90s`, `30m`, `1h`, `2d`) or an ISO 8601 time."""
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(
            f"{option} {value!r} is neither a duration nor an ISO 8601 time",
            [f"e.g. {option} 1h, {option} 30m, {option} 2026-11-26T05:00:00Z"],
        )
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


COMMANDS = {  # each command of `main` -> the module that registers it, imported on first use
    "approve": "engine.cli.runs",
    "cache": "engine.cli.runs",
    "cancel": "engine.cli.runs",
    "check": "engine.cli.check",
    "compact": "engine.cli.retention",
    "demo": "engine.cli.runs",
    "export": "engine.cli.inspect",
    "history": "engine.cli.inspect",
    "logs": "engine.cli.logs",
    "prune": "engine.cli.retention",
    "replay": "engine.cli.inspect",
    "restart": "engine.cli.runs",
    "resume": "engine.cli.runs",
    "retry": "engine.cli.runs",
    "run": "engine.cli.runs",
    "runs": "engine.cli.inspect",
    "serve": "engine.cli.serve",
    "show": "engine.cli.inspect",
    "signal": "engine.cli.signal",
    "skip": "engine.cli.runs",
    "stats": "engine.cli.observe",
    "traces": "engine.cli.observe",
    "ui": "engine.cli.ui",
    "validate": "engine.cli.app",
    "watch": "engine.cli.observe",
}


class WfaGroup(click.Group):
    """Reports errors escaping a command as `error: ...` instead of a traceback.

    Commands named in `lazy` (command -> module) are imported when first looked
    up, so `wfa runs` loads the read commands only, not the engine that runs.

    `main` does so for click's own errors too (a bad option value, an unknown
    option or command, a missing argument), which click would print as usage
    text: here they are one `error:` line, a short usage hint, exit 2.
    """

    group_class = type  # `@main.group()` makes WfaGroups too

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            import_module(self.lazy[cmd_name])  # registers its commands on this group
        return super().get_command(ctx, cmd_name)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        # the program is `wfa` however it was started, so completion reads _WFA_COMPLETE
        prog_name, complete_var = prog_name or "wfa", complete_var or "_WFA_COMPLETE"
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            if exc.ctx is not None:
                usage = exc.ctx.command.get_usage(exc.ctx).removeprefix("Usage: ")
                click.echo(f"  usage: {usage}  (see {exc.ctx.command_path} --help)", err=True)
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            code = exc.exit_code
        except click.Abort:
            click.echo("error: interrupted", err=True)
            code = EXIT_INTERRUPTED
        except (SystemExit, KeyboardInterrupt, GeneratorExit):
            raise
        except BaseException as exc:  # e.g. a panic of a native library, before a command ran
            click.echo(f"error: internal error: {type(exc).__name__}: {exc}", err=True)
            click.echo(f"  {BUG_HINT}", err=True)
            code = EXIT_INTERNAL
        sys.exit(code if isinstance(code, int) else EXIT_OK)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """`wfa --json CMD` is `wfa CMD --json`."""
        name, cmd, rest = super().resolve_command(ctx, args)
        if ctx.params.get("as_json"):
            ctx.meta[JSON_META] = True  # shared down the chain, for `wfa --json cache clear`
        if ctx.meta.get(JSON_META) and cmd is not None and not isinstance(cmd, click.Group):
            if any(p.name == "as_json" for p in cmd.params):
                rest = ["--json", *rest]
            elif not ctx.resilient_parsing:
                fail(f"--json: `{ctx.command_path} {name}` has no machine output")
        return name, cmd, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BrokenPipeError:  # `wfa export | head`: the reader left; not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise click.exceptions.Exit(EXIT_OK) from None
        except ValidationError as exc:
            where = f"{exc.source}: " if exc.source else ""
            fail(f"{where}invalid", [str(p) for p in exc.problems])
        except InvalidTransition as exc:  # a run's history does not fold
            fail(str(exc), DAMAGE_ADVICE)
        except WorkflowAutomatorError as exc:
            fail(str(exc))
        except CorruptStoreError as exc:
            fail(f"the event log {exc.path} is damaged: {exc.reason}", DAMAGE_ADVICE)
        except CorruptEventError as exc:
            fail(f"the event log is damaged: {exc}", DAMAGE_ADVICE)
        except StoreReadOnlyError as exc:
            fail(f"{exc}: the data directory is not writable; run as its owner")
        except EventStoreError as exc:
            fail(f"cannot use the event log: {exc}")
        except Exception as exc:
            state = ctx.find_object(CliState)
            details = [BUG_HINT]
            if state is not None and state.verbose:
                details = traceback.format_exc().splitlines()
            fail(f"internal error: {type(exc).__name__}: {exc}", details, EXIT_INTERNAL)


@click.group(cls=WfaGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    type=click.Path(path_type=Path),  # checked by engine.input.datadir, with a clear error
    envvar="WFA_DATA",
    help="Data directory holding the event log (default: storage.path, `.wfa`).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="WFA_CONFIG",
    help="Engine configuration file (wfa.yaml); every key is optional.",
)
@click.option("-v", "--verbose", count=True, help="More output on stderr; repeat for more.")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine output: as --json after the command."
)
@click.version_option(package_name="workflow-automator", prog_name="wfa")
@click.pass_context
def main(
    ctx: click.Context, data: Path | None, config_path: Path | None, verbose: int, as_json: bool
) -> None:
    """WorkflowAutomator: run crash-safe workflows of commands and Python steps."""
    ctx.obj = CliState(data=data, config_path=config_path, verbose=verbose)
    if verbose:
        logging.basicConfig(
            level=logging.INFO if verbose == 1 else logging.DEBUG,
            format="%(levelname)s %(name)s: %(message)s",
        )


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--imports",
    is_flag=True,
    help="Also import each `call:` module (this runs its code) and check its function; "
    "a module that cannot be found or imported is then an error, not a warning.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results on stdout.")
@pass_state
def validate(state: CliState, files: Sequence[Path], imports: bool, as_json: bool) -> None:
    """Check workflow FILEs (YAML, JSON or TOML) without running anything.

    Every problem is reported, one per line, as `FILE: LOCATION: message (what to do)`.
    Checks use the engine configuration (--config): agents, limits, conditions.
    Exit code 0 when every file is valid, 2 when any is not.

    A `call:` module that cannot be found (from the file's directory or the working
    directory) and a `run:` program not on PATH are `warning: ...` lines, which do
    not change the exit code; with --imports a `call:` module that cannot be found
    or imported is a problem. The key reference is docs/workflow-file.md.
    """
    config = state.config()
    reports = [(str(path), *_report(path, config, imports)) for path in files]
    if as_json:
        print_json(
            [
                {
                    "file": name,
                    "valid": not problems,
                    "problems": [msgspec.to_builtins(p) for p in problems],
                    "warnings": [msgspec.to_builtins(p) for p in warnings],
                }
                for name, problems, warnings in reports
            ]
        )
    else:
        for name, problems, warnings in reports:
            for warning in warnings:
                click.echo(f"warning: {name}: {warning}", err=True)
            if not problems:
                click.echo(f"{name}: valid")
            for problem in problems:
                click.echo(f"{name}: {problem}", err=True)
    if any(problems for _, problems, _ in reports):
        raise click.exceptions.Exit(EXIT_BAD_INPUT)


def _report(path: Path, config: EngineConfig, imports: bool) -> tuple[list[Problem], list[Problem]]:
    """The problems and the warnings of one workflow file."""
    spec, problems = validate_file(path, config)
    if problems or spec is None:
        return problems, []
    calls = call_problems(spec, path.resolve().parent, load=imports)
    warnings = run_problems(spec)
    if imports:
        return calls, warnings
    return [], calls + warnings
