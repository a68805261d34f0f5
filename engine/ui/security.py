"""Who may use the UI, and what a browser may do with its pages.

- A token, when set (always when bound beyond loopback), is checked on every
  request: `Authorization: Bearer TOKEN`, or the HttpOnly, SameSite=Strict cookie
  a browser gets by opening any page once with `?token=TOKEN` (it is then sent to
  the same URL without the token, so the token does not stay in the address bar
  or the history). Anything else is 401.
- Without a token, only loopback Host names are served: a page elsewhere cannot
  reach the UI through DNS rebinding.
- Every response says: a strict Content-Security-Policy (scripts and styles from
  the UI's own /static only, no inline script), nosniff, no framing, no referrer.
  No CORS header is ever sent, so other origins cannot read any answer.
- Actions are POST with a CSRF token derived from a per-process secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

COOKIE = "wfa_ui_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

Scope = dict[str, Any]


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def hostname(host_header: str) -> str:
    """`127.0.0.1:8765` -> `127.0.0.1`; `[::1]:8765` -> `[::1]`."""
    if host_header.startswith("["):
        return host_header.split("]", 1)[0] + "]"
    return host_header.rsplit(":", 1)[0]


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Guard:
    """ASGI middleware: the token check, the Host check, and the security headers."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token
        self.ui: Any = None  # the app's shared state, for the server that runs it

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no WebSocket route: refuse before any check could be skipped
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        if self.token is None:
            if not is_loopback(hostname(headers.get("host", ""))):
                await _plain(secured, 403, "this UI answers on loopback names only")
                return
            await self.app(scope, receive, secured)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        given = query.get("token")
        if given is not None and scope["method"] == "GET" and self._ok(given):
            rest = urlencode([(k, v) for k, v in query.items() if k != "token"])
            location = scope["path"] + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            await _plain(
                secured, 303, "logged in", [("location", location), ("set-cookie", cookie)]
            )
            return
        bearer = headers.get("authorization", "")
        cookies = SimpleCookie(headers.get("cookie", ""))
        presented = bearer[7:] if bearer.lower().startswith("bearer ") else None
        if presented is None and COOKIE in cookies:
            presented = cookies[COOKIE].value
        if presented is None or not self._ok(presented):
            await _plain(
                secured,
                401,
                "unauthorized: send Authorization: Bearer TOKEN, or open the UI once with "
                "?token=TOKEN (the token wfa ui printed, or WFA_UI_TOKEN)",
                [("www-authenticate", "Bearer")],
            )
            return
        await self.app(scope, receive, secured)

    def _ok(self, presented: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(presented.encode(), self.token.encode())


async def _plain(
    send: Any, status: int, text: str, extra: list[tuple[str, str]] | None = None
) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers += [(k.encode(), v.encode()) for k, v in extra or []]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": (text + "\n").encode()})


class Csrf:
    """One CSRF token per UI process, checked on every POST."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self.token = hmac.new(self._secret, b"wfa-ui-actions", hashlib.sha256).hexdigest()

    def valid(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.token)
