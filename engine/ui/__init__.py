"""`wfa ui`: a local web view of the runs in a data directory (the README's Web UI).

`create_app(...)` is the whole public API: an ASGI app to serve with uvicorn or
to mount in a Starlette or FastAPI app. It needs the `[ui]` extra
(`pip install 'workflow-automator[ui]'`); `MISSING_EXTRA` is what to tell a
user without it.
"""

from __future__ import annotations

from typing import Any

MISSING_EXTRA = (
    "the web UI needs the [ui] extra: pip install 'workflow-automator[ui]' "
    "(Starlette, uvicorn, Jinja2)"
)


def ui_available() -> bool:
    """Are the `[ui]` extra's packages importable?"""
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return False
    return True


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The UI as an ASGI app (see engine.ui.app.create_app for the options)."""
    from engine.ui.app import create_app as make

    return make(*args, **kwargs)


__all__ = ["MISSING_EXTRA", "create_app", "ui_available"]
