"""Which `ErrorKind` an exception raised by a `call` step's function is.

Retry policies match on the kind (`on: [network]`), so the classes are chosen
for what a retry can fix:

- `network`: `ConnectionError` and its subclasses (refused, reset, aborted,
  broken pipe), `TimeoutError` (which is `socket.timeout`,
  `asyncio.TimeoutError` and `concurrent.futures.TimeoutError`), DNS failures
  (`socket.gaierror`, `socket.herror`), `ssl.SSLError`,
  `http.client.HTTPException` (bad status line, incomplete read) and
  `urllib.error.URLError` except `HTTPError` (the server answered: that is
  the step's business, `user`). The exception's cause chain is searched too,
  so wrappers from libraries such as requests, urllib3 and httpx, which chain
  the socket error, count as `network`.
  A `TimeoutError` the function raises is `network`, not `timeout`: the
  `timeout` kind means the engine's own per-attempt limit fired, and a retry
  policy `on: [timeout]` should not match the step's I/O timeouts.
- `resource`: `MemoryError`, and `OSError` for a full disk or quota (ENOSPC,
  EDQUOT), exhausted memory (ENOMEM) or file descriptors (EMFILE, ENFILE).
- `user`: everything else, including `SystemExit` and `KeyboardInterrupt`
  raised inside the function.
"""

from __future__ import annotations

import errno
import http.client
import socket
import ssl
import urllib.error

from engine.rules.errors import ErrorKind

__all__ = ["RESOURCE_ERRNOS", "classify_exception", "describe_exception"]

RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE})
_MAX_CHAIN = 16


def classify_exception(exc: BaseException) -> ErrorKind:
    """The kind of failure `exc`, raised by a step's function, stands for."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        kind = _own_kind(current)
        if kind is not None:
            return kind
        current = current.__cause__ or current.__context__
    return ErrorKind.USER


def describe_exception(exc: BaseException) -> str:
    """ "ExcType: message" as a traceback's last line shows it (module-qualified if not builtin)."""
    cls = type(exc)
    name = cls.__qualname__
    if cls.__module__ not in ("builtins", "__main__"):
        name = f"{cls.__module__}.{name}"
    text = str(exc)
    return f"{name}: {text}" if text else name


def _own_kind(exc: BaseException) -> ErrorKind | None:
    if isinstance(exc, MemoryError):
        return ErrorKind.RESOURCE
    if isinstance(exc, urllib.error.HTTPError):
        return ErrorKind.USER  # the server answered; whatever caused it, not the network
    if isinstance(
        exc,
        ConnectionError
        | TimeoutError
        | socket.gaierror
        | socket.herror
        | ssl.SSLError
        | http.client.HTTPException
        | urllib.error.URLError,
    ):
        return ErrorKind.NETWORK
    if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
        return ErrorKind.RESOURCE
    return None
