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

from engine.rules.errors import ExpressionError

VARIABLES = frozenset({"inputs", "steps", "run", "item"})

MAX_EXPRESSION_CHARS = 10_000
"""Longer expressions are refused unparsed: the CEL parser panics on very long ones."""

FUNCTIONS = frozenset(
    {
        "size", "contains", "startsWith", "endsWith", "matches",
        "string", "int", "uint", "double", "bytes", "duration", "timestamp", "dyn", "type",
        "getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek",
        "getHours", "getMinutes", "getSeconds", "getMilliseconds",
    }
)  # fmt: skip
"""The functions the CEL runtime provides; the macros (`has`, `all`, `exists`,
`exists_one`, `map`, `filter`) expand at parse time and operators are named `_x_`, `@x`."""

_MACRO_VARIABLE = re.compile(r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_]\w*)\s*,")
_INPUT_BY_DOT = re.compile(r"(?<![\w.])inputs\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()")
_INPUT_BY_INDEX = re.compile(r"(?<![\w.])inputs\s*\[\s*(\"[^\"]*\"|'[^']*')\s*\]")

_TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
_STRING_LITERAL = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_STEP_BY_DOT = re.compile(r"(?<![\w.])steps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_STEP_BY_INDEX = re.compile(r"(?<![\w.])steps\s*\[\s*(\"[^\"]*\"|'[^']*')\s*\]")


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Any:
    """Compile `source` once; raise ExpressionError naming what is wrong."""
    if not source.strip():
        raise ExpressionError("empty expression")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"the expression is {len(source)} characters long; at most "
            f"{MAX_EXPRESSION_CHARS} are allowed"
        )
    import cel  # imported on first use: it costs ~150 ms, which every CLI call would pay

    try:
        program = cel.compile(source)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the Rust core may panic (PanicException is a BaseException)
        raise ExpressionError(_first_line(exc)) from None
    bound = set(_MACRO_VARIABLE.findall(_STRING_LITERAL.sub('""', source)))
    unknown = sorted(set(program.variables()) - VARIABLES - bound)
    if unknown:
        raise ExpressionError(
            f"unknown variable {', '.join(map(repr, unknown))}; "
            f"expressions see only {', '.join(sorted(VARIABLES))}"
        )
    functions = sorted(
        name for name in program.functions() if name[0].isalpha() and name not in FUNCTIONS
    )
    if functions:
        raise ExpressionError(
            f"unknown function {', '.join(map(repr, functions))}; expressions have size, "
            "contains, startsWith, endsWith, matches, int, uint, double, string, bytes, "
            "duration, timestamp, dyn, type, the timestamp getters (getFullYear, ...) and "
            "the macros has, all, exists, exists_one, map, filter"
        )
    return program


def evaluate(source: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate `source` over plain data (dicts, lists, str, numbers, bool, None)."""
    program = compile_expression(source)
    try:
        return program.execute(dict(variables))
    except KeyError as exc:
        raise ExpressionError(f"{source!r}: no such key {exc}") from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the CEL runtime raises several types, and may panic
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


def referenced_inputs(source: str) -> set[str]:
    """Input names an expression reads (`inputs.a` or `inputs["a-b"]`)."""
    found = {m.group(1)[1:-1] for m in _INPUT_BY_INDEX.finditer(source)}
    without_strings = _STRING_LITERAL.sub('""', source)
    found.update(m.group(1) for m in _INPUT_BY_DOT.finditer(without_strings))
    return found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
