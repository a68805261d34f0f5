"""Typed workflow inputs: `inputs: {count: {type: int, default: 1}}` and msgspec Structs.

A workflow's `inputs:` maps each name to its default value, as before, or to
a declaration: a mapping with a `type` key and nothing but `type`, `default`
and `description`. A declared input without a `default` is required. Given
values are checked against the type at submit (Python and `wfa run -i`), and
the declarations themselves when the workflow is validated.

`-i` values are parsed as JSON when they parse, so `-i name=3` gives the
number 3: a `string` input takes a number or a boolean as its text ("3").
Python workflows may declare their inputs as a msgspec Struct instead
(`Workflow(..., inputs=OrderInputs)`, or a function whose typed parameters
are the inputs); the builder turns it into declarations (engine/builder.py)
and the engine validates with the Struct itself, so errors are msgspec's,
qualified by the path inside the inputs (`inputs.order.count`).
"""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeGuard

import msgspec

from engine.rules.errors import Problem

TYPES: Final[dict[str, Any]] = {
    "string": str,
    "str": str,
    "int": int,
    "integer": int,
    "float": float,
    "number": float,
    "bool": bool,
    "boolean": bool,
    "list": list,
    "array": list,
    "dict": dict,
    "object": dict,
    "any": Any,
}
"""The type names an input declaration may use."""

_DECLARATION_KEYS: Final = frozenset({"type", "default", "description"})
_NO_DEFAULT: Final = object()


def is_declaration(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """`value` (under `inputs:`) declares a typed input rather than being a default."""
    return isinstance(value, Mapping) and "type" in value and set(value) <= _DECLARATION_KEYS


def input_defaults(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The default value of every input that has one."""
    defaults = {}
    for name, value in inputs.items():
        if not is_declaration(value):
            defaults[name] = value
        elif "default" in value:
            defaults[name] = value["default"]
    return defaults


def declaration_problems(inputs: Mapping[str, Any]) -> list[Problem]:
    """Unknown type names, and defaults that are not of their declared type."""
    problems = []
    for name, value in inputs.items():
        if not is_declaration(value):
            continue
        where = f"$.inputs.{name}"
        type_name = value["type"]
        if not isinstance(type_name, str) or type_name not in TYPES:
            problems.append(
                Problem(
                    f"{where}.type",
                    f"unknown input type {type_name!r}",
                    f"use one of: {', '.join(TYPES)}",
                )
            )
        elif "default" in value and (error := _type_error(value["default"], type_name)):
            problems.append(Problem(f"{where}.default", f"the default {error}"))
    return problems


def input_problems(inputs: Mapping[str, Any], given: Mapping[str, Any]) -> list[Problem]:
    """Given values that are not of their declared types, and required inputs not given."""
    problems = []
    for name, value in inputs.items():
        if not is_declaration(value) or value.get("type") not in TYPES:
            continue
        if name in given:
            error = _type_error(given[name], value["type"])
            if error:
                problems.append(Problem(f"-i {name}", error))
        elif "default" not in value:
            problems.append(
                Problem(f"-i {name}", "is required (it has no default)", f"pass -i {name}=VALUE")
            )
    return problems


def coerce_inputs(inputs: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """`given` with each typed value as its type holds it (after `input_problems` found
    none): `-i n=3` for a `float` input stores 3.0, and for a `string` input "3"."""
    out = dict(given)
    for name, value in given.items():
        declared = inputs.get(name)
        if is_declaration(declared) and declared["type"] in TYPES:
            out[name] = _as_type(value, declared["type"])
    return out


def _as_type(value: Any, type_name: str) -> Any:
    wanted = TYPES[type_name]
    if wanted is str and isinstance(value, bool | int | float):
        return json.dumps(value)  # the text the user typed: `-i name=3` is parsed as JSON
    return msgspec.convert(value, wanted)


def _type_error(value: Any, type_name: str) -> str | None:
    try:
        _as_type(value, type_name)
    except msgspec.ValidationError:
        return f"must be {_article(type_name)}, not {_described(value)}"
    return None


def _article(type_name: str) -> str:
    return ("an " if type_name[0] in "aeiou" else "a ") + type_name


def _described(value: Any) -> str:
    text = json.dumps(value, default=str)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


# -- Python: a Struct, or a function's typed parameters ------------------------


def inputs_struct(declared: Any) -> type[msgspec.Struct] | None:
    """The Struct type of `Workflow(inputs=...)`: a Struct class as is, a function's
    typed parameters as a Struct; None for a plain mapping of defaults."""
    if isinstance(declared, type) and issubclass(declared, msgspec.Struct):
        return declared
    if callable(declared) and not isinstance(declared, Mapping):
        hints = typing.get_type_hints(declared)
        fields: list[Any] = []
        for param in inspect.signature(declared).parameters.values():
            kind = hints.get(param.name, Any)
            if param.default is inspect.Parameter.empty:
                fields.append((param.name, kind))
            else:
                fields.append((param.name, kind, param.default))
        name = getattr(declared, "__name__", "Inputs")
        return msgspec.defstruct(name, fields, kw_only=True)
    return None


def struct_declarations(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """A Struct's fields as input declarations (complex types are declared `any`; the
    Struct checks them at submit)."""
    names = {v: k for k, v in reversed(TYPES.items())}  # the first name of each type
    hints = typing.get_type_hints(struct)
    declarations: dict[str, Any] = {}
    info = msgspec.structs.fields(struct)
    for field in info:
        declaration: dict[str, Any] = {"type": names.get(hints.get(field.name), "any")}
        default = _default_of(field)
        if default is not _NO_DEFAULT:
            declaration["default"] = msgspec.to_builtins(default)
        declarations[field.encode_name] = declaration
    return declarations


def _default_of(field: msgspec.structs.FieldInfo) -> Any:
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        factory: Callable[[], Any] = field.default_factory
        return factory()
    return _NO_DEFAULT


def struct_problems(struct: type[msgspec.Struct], given: Mapping[str, Any]) -> list[Problem]:
    """msgspec's own error for `given` as `struct`, at its path inside the inputs."""
    try:
        msgspec.convert(dict(given), struct)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `")
        where = "inputs" + path.rstrip("`").removeprefix("$") if path else "inputs"
        return [Problem(where, message)]
    return []
