"""`wfa ui`: serve the web UI for a data directory, beside whatever drives it.

The UI opens the directory as a reader that never drives runs: it works while
`wfa serve` (or a `wfa run`) drives the directory, and its actions append
commands to the log exactly as `wfa approve` and its siblings do. Bound to
loopback it needs no token; bound anywhere else it requires one on every
request (`--token`, `WFA_UI_TOKEN`, or a random one printed at start).
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click

from engine.cli.app import CliState, fail, main, pass_state
from engine.ui import MISSING_EXTRA, ui_available

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
F = TypeVar("F", bound=Callable[..., Any])
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ui_options(prefix: str = "") -> Callable[[F], F]:
    """The host/port/read-only/token options, shared with `wfa serve --ui`."""

    def decorate(command: F) -> F:
        for option in reversed(
            [
                click.option(
                    f"--{prefix}host",
                    "ui_host",
                    default=DEFAULT_HOST,
                    show_default=True,
                    help="Address to bind; beyond loopback a token is required.",
                ),
                click.option(
                    f"--{prefix}port",
                    "ui_port",
                    type=click.IntRange(0, 65535),
                    default=DEFAULT_PORT,
                    show_default=True,
                    help="Port to listen on (0: any free port, printed).",
                ),
                click.option(
                    f"--{prefix}read-only",
                    "read_only",
                    is_flag=True,
                    help="Show runs only: no approve, retry, skip, cancel, restart.",
                ),
                click.option(
                    f"--{prefix}token",
                    "token",
                    envvar="WFA_UI_TOKEN",
                    metavar="TOKEN",
                    help="Access token required on every request (also WFA_UI_TOKEN); "
                    "generated and printed when binding beyond loopback without one.",
                ),
            ]
        ):
            command = option(command)
        return command

    return decorate


class UiServer:
    """The UI served by uvicorn in a thread of this process."""

    def __init__(self, server: Any, sock: socket.socket, app: Any) -> None:
        self.server, self.app = server, app
        self.thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="wfa-ui", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        """End the live streams first (they would hold a graceful stop), then the server."""
        self.app.ui.feed.stop()
        self.server.should_exit = True
        self.thread.join(10)


def start_ui(engine: Any, host: str, port: int, read_only: bool, token: str | None) -> UiServer:
    """Serve the UI over `engine` in a thread; prints the URL (with the token, if any)."""
    return UiServer(*_server(engine, host, port, read_only, token))


def _server(
    engine: Any, host: str, port: int, read_only: bool, token: str | None
) -> tuple[Any, socket.socket, Any]:
    """The uvicorn server, its listening socket (bound here, so that a port in use is
    one clear error) and the app."""
    if not ui_available():
        fail(MISSING_EXTRA)
    import uvicorn

    from engine.ui.app import create_app
    from engine.ui.security import is_loopback, new_token

    if not is_loopback(host) and not token:
        token = new_token()
        click.echo(f"wfa ui: {host} is not loopback: every request needs the token", err=True)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        fail(
            f"wfa ui: cannot listen on {host}:{port}: {exc.strerror or exc}",
            ["pick another --port (0 picks a free one), or stop what uses it"],
        )
    sock.listen(128)
    app = create_app(engine, read_only=read_only, token=token)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    shown = f"[{host}]" if ":" in host else host
    login = f"/?token={token}" if token else "/"
    click.echo(f"wfa ui: serving http://{shown}:{sock.getsockname()[1]}{login}", err=True)
    return uvicorn.Server(config), sock, app


@main.command("ui")
@ui_options()
@pass_state
def ui(state: CliState, ui_host: str, ui_port: int, read_only: bool, token: str | None) -> None:
    """Serve a web view of the data directory's runs until Ctrl-C or SIGTERM.

    Pages: runs (/), a run (/runs/RUN) with its DAG, timeline, steps, outputs,
    logs and time travel over its events, stats, agents and alerts; the same
    data as JSON under /api/. Reads the log, so it works while another process
    drives the directory; its actions are logged as `wfa approve` and the other
    commands log theirs, and the driving engine acts on them. Exit code 0 after
    Ctrl-C or SIGTERM, 2 for bad options or a missing [ui] extra.
    """
    if not ui_available():
        fail(MISSING_EXTRA)
    with state.engine(drive=False, create=False) as engine:
        served = start_ui(engine, ui_host, ui_port, read_only, token)
        stop = threading.Event()
        previous = {s: signal.signal(s, lambda *_: stop.set()) for s in STOP_SIGNALS}
        try:
            while served.thread.is_alive() and not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            served.stop()
