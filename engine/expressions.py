"""CEL expressions: `when:`, `foreach:` and `${{ }}` templates.

Expressions are Common Expression Language, run by the `common-expression-language`
package (a Rust CEL core): never `eval`. It was chosen over `cel-expr-python`
(faster, but returns evaluation errors as values and rejects `1 == 1.0`, which
JSON outputs produce all the time) and `cel-python` (pure Python, ~25x slower).

Programs are compiled once per distinct source and cached, so the state
machine can keep plain source strings in its data and still never re-parse.
Variables visible to expressions: `inputs`, `steps` (`steps.<id>.outputs`,
`steps.<id>.status`), `run`, and `item` inside a `foreach` instance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import msgspec

from engine.errors import ExpressionError

VARIABLES = frozenset({"inputs", "steps", "run", "item"})

_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_STRING_LITERAL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_STEP_BY_DOT = re.compile(r"(?<![\w.])steps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_STEP_BY_INDEX = re.compile(r"(?<![\w.])steps\s*\[\s*(\"[^\"]*\"|'[^']*')\s*\]")


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Any:
    """Compile `source` once; raise ExpressionError naming what is wrong."""
    if not source.strip():
        raise ExpressionError("empty expression")
    import cel  # imported on first use: it costs ~150 ms, which every CLI call would pay

    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ExpressionError(_first_line(exc)) from None
    unknown = sorted(set(program.variables()) - VARIABLES)
    if unknown:
        raise ExpressionError(
            f"unknown variable {', '.join(map(repr, unknown))}; "
            f"expressions see only {', '.join(sorted(VARIABLES))}"
        )
    return program


def evaluate(source: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate `source` over plain data (dicts, lists, str, numbers, bool, None)."""
    program = compile_expression(source)
    try:
        return program.execute(dict(variables))
    except KeyError as exc:
        raise ExpressionError(f"{source!r}: no such key {exc}") from None
    except Exception as exc:  # the CEL runtime raises several types; all are the user's
        raise ExpressionError(f"{source!r}: {_first_line(exc)}") from None


def template_expressions(text: str) -> list[str]:
    """The sources of every `${{ expr }}` in `text`, in order."""
    return [m.group(1).strip() for m in _TEMPLATE.finditer(text)]


def render_template(text: str, variables: Mapping[str, Any]) -> str:
    """Replace every `${{ expr }}` with its value: strings as they are, anything else as JSON."""

    def substitute(match: re.Match[str]) -> str:
        value = evaluate(match.group(1).strip(), variables)
        return value if isinstance(value, str) else msgspec.json.encode(value).decode()

    return _TEMPLATE.sub(substitute, text)


def referenced_steps(source: str) -> set[str]:
    """Step ids an expression reads (`steps.a...` or `steps["a-b"]...`)."""
    found = {m.group(1)[1:-1] for m in _STEP_BY_INDEX.finditer(source)}
    without_strings = _STRING_LITERAL.sub('""', source)
    found.update(m.group(1) for m in _STEP_BY_DOT.finditer(without_strings))
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
