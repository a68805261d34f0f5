"""The schema walk: a plain document against the msgspec Struct types, every problem at once.

msgspec stops at the first error; the walker checks each key and leaf value
with `msgspec.convert` itself, so that every unknown key (with the closest
valid one), missing key and bad value is reported together with its JSON-path
location (`$.steps[3].after[0]`) and a hint of what to write.
"""

from __future__ import annotations

import difflib
import enum
import functools
import json
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

import msgspec

from engine.rules.errors import Problem, ValidationError
from engine.rules.spec import StepSpec, WorkflowSpec
from engine.rules.values import MAX_INT, unstorable

MAX_NODES = 200_000
"""Values walked per document; stops YAML alias bombs and self-referencing aliases."""


# Hints for fields whose type alone does not say what to write.
_FIELD_HINTS: Mapping[tuple[type, str], str] = {
    (StepSpec, "run"): 'write the command as a list of strings, e.g. run: ["python3", "build.py"]',
    (StepSpec, "after"): "write a list of step ids, e.g. after: [design]",
    (StepSpec, "fallback"): "write a list of agent names, e.g. fallback: [backend-2]",
    (StepSpec, "call"): "write module:function, e.g. myproject.tasks:build_api",
    (StepSpec, "env"): "environment values are strings; quote numbers and booleans",
    (StepSpec, "retry"): "write a number of attempts as retry: {max_attempts: 3}",
    (StepSpec, "when"): "write a CEL expression as a string",
    (StepSpec, "foreach"): "write a CEL list expression as a string",
    (WorkflowSpec, "steps"): "write a list of steps, each a mapping with at least `id`",
    (WorkflowSpec, "inputs"): "write a mapping of input names to default values",
}
_MISSING_HINTS: Mapping[tuple[type, str], str] = {
    (WorkflowSpec, "name"): "add `name: my-workflow` (letters, digits, _ . -)",
    (WorkflowSpec, "steps"): "add `steps:`, a list of steps, each a mapping with at least `id`",
    (StepSpec, "id"): "give every step a unique `id:` (letters, digits, _ -)",
}


def walk(document: object, type_: type[msgspec.Struct], source: str) -> list[Problem]:
    """Every schema problem of `document`; ValidationError if it is too large to walk."""
    walker = _Walker()
    try:
        walker.check(document, type_, "$")
    except (_TooLarge, RecursionError):
        raise ValidationError(
            [
                Problem(
                    "$",
                    f"the document has more than {MAX_NODES} values (or a self-referencing alias)",
                    "remove YAML aliases that expand into huge or recursive structures",
                )
            ],
            source=source,
        ) from None
    return walker.problems


class _TooLarge(Exception):
    pass


class _Walker:
    """Checks a plain document against a type, collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._nodes = 0

    def check(self, value: object, type_: Any, location: str, hint: str = "") -> None:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooLarge
        if type_ is Any:
            if isinstance(value, int | float) and unstorable(value):  # (a bool never is)
                self.problems.append(_unstorable_number(value, location))
            self._count(value, location)
            return
        origin = typing.get_origin(type_)
        if origin is typing.Union or origin is types.UnionType:
            members = [t for t in typing.get_args(type_) if t is not type(None)]
            if value is None and len(members) < len(typing.get_args(type_)):
                return
            if len(members) == 1:
                self.check(value, members[0], location, hint)
                return
            structs = [t for t in members if isinstance(t, type) and issubclass(t, msgspec.Struct)]
            if isinstance(value, dict) and len(structs) == 1:  # `schedule: {cron, overlap}`
                self._check_struct(value, structs[0], location)
                return
        elif isinstance(type_, type) and issubclass(type_, msgspec.Struct):
            self._check_struct(value, type_, location)
            return
        elif origin in (tuple, list) and isinstance(value, list | tuple):
            args = typing.get_args(type_)
            if origin is list or (len(args) == 2 and args[1] is Ellipsis):
                for index, item in enumerate(value):
                    self.check(item, args[0], f"{location}[{index}]", hint)
                return
        elif origin is dict and isinstance(value, dict):
            key_type, value_type = typing.get_args(type_)
            for key, item in value.items():
                key_location = _key_location(location, key)
                self._leaf(key, key_type, key_location, "keys here are strings")
                self.check(item, value_type, key_location, hint)
            return
        self._leaf(value, type_, location, hint)

    def _check_struct(self, value: object, type_: type[msgspec.Struct], location: str) -> None:
        fields = fields_by_key(type_)
        if not isinstance(value, dict):
            self.problems.append(
                Problem(
                    location,
                    f"expected a mapping, got {_describe(value)}",
                    f"write a mapping with keys such as {_key_list(fields)}",
                )
            )
            return
        for key in value:
            if isinstance(key, str) and key in fields:
                continue
            self.problems.append(_unknown_key(key, location, fields, type_))
        for name, field in fields.items():
            if name in value:
                hint = _FIELD_HINTS.get((type_, field.name), "")
                self.check(value[name], field.type, _key_location(location, name), hint)
            elif field.required:
                self.problems.append(
                    Problem(
                        location,
                        f"missing required key `{name}`",
                        _MISSING_HINTS.get((type_, field.name)) or f"add `{name}:`",
                    )
                )

    def _leaf(self, value: object, type_: Any, location: str, hint: str) -> None:
        try:
            msgspec.convert(value, type_)
        except msgspec.ValidationError as exc:
            message, sub = split_msgspec_error(str(exc))
            if message.startswith("Invalid enum value"):
                message = f"unknown value {_short(value)}"
            elif "got" not in message:
                message = f"{message}, got {_short(value)}"
            elif isinstance(value, str | int | float) and not isinstance(value, bool):
                message = f"{message} {_short(value)}"
            message = message[:1].lower() + message[1:]
            self.problems.append(
                Problem(location + sub[1:], message, hint or _type_hint(type_, value))
            )

    def _count(self, value: object, location: str) -> None:
        """Walk the values under an `Any` field: they count toward the budget, and their
        numbers must fit the log's encoding."""
        if isinstance(value, dict):
            for key, item in value.items():
                key_location = _key_location(location, key)
                self.check(key, Any, key_location)
                self.check(item, Any, key_location)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                self.check(item, Any, f"{location}[{index}]")


def _unstorable_number(value: float, location: str) -> Problem:
    if isinstance(value, int):
        return Problem(
            location,
            f"the number {_short(value)} is too large",
            f"whole numbers here lie within ±{MAX_INT}; quote it to keep it as text",
        )
    return Problem(
        location,
        f"the number {value!r} cannot be stored (JSON has no NaN or infinity)",
        "quote it to keep it as text",
    )


@functools.cache
def fields_by_key(type_: type) -> Mapping[str, msgspec.structs.FieldInfo]:
    """A Struct's fields by their file key; cached: resolving annotations is slow."""
    return {f.encode_name: f for f in msgspec.structs.fields(type_)}


def _unknown_key(key: object, location: str, fields: Mapping[str, Any], type_: type) -> Problem:
    names = list(fields)
    text = str(key)
    renamed = [name for name, f in fields.items() if f.name == text and name != text]
    close = (  # a shortened key (`max_steps`) means the key it starts, not a look-alike
        renamed
        or [name for name in names if name.startswith(text) or text.startswith(name)]
        or difflib.get_close_matches(text, names, n=1, cutoff=0.6)
    )
    message = f"unknown key `{text}`"
    if close:
        message += f"; did you mean `{close[0]}`?"
    return Problem(_key_location(location, text), message, f"valid keys here: {_key_list(fields)}")


def split_msgspec_error(text: str) -> tuple[str, str]:
    """("Expected `int`, got `str`", "$.a[0]") from msgspec's "... - at `$.a[0]`"."""
    message, sep, rest = text.rpartition(" - at `")
    if not sep:
        return text, "$"
    return message, rest.rstrip("`")


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _type_hint(type_: Any, value: object) -> str:
    """What to write instead, from the type and its constraints."""
    bounds: list[str] = []
    if typing.get_origin(type_) is typing.Annotated:
        for meta in typing.get_args(type_)[1:]:
            if isinstance(meta, msgspec.Meta):
                if meta.description:
                    return str(meta.description)
                bounds += [
                    f"{op} {_number(getattr(meta, a))}"
                    for a, op in _BOUNDS
                    if getattr(meta, a) is not None
                ]
        type_ = typing.get_args(type_)[0]
    origin = typing.get_origin(type_) or type_
    if type_ is bool:
        return "write true or false; yes/no/on/off are strings in YAML 1.2"
    if type_ is int or type_ is float:
        kind = "a whole number" if type_ is int else "a number"
        return f"write {kind} {' and '.join(bounds)}".rstrip()
    if type_ is str:
        return "write text; quote it if it looks like a number or boolean"
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        choices = [str(member.value) for member in type_]
        close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.5)
        prefix = f"did you mean `{close[0]}`? " if close else ""
        return f"{prefix}one of: {', '.join(choices)}"
    if origin in (list, tuple):
        return "write a list, e.g. [a, b]"
    if origin is dict:
        return "write a mapping, e.g. {key: value}"
    return ""


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _key_location(location: str, key: object) -> str:
    if isinstance(key, str) and _IDENTIFIER.match(key):
        return f"{location}.{key}"
    return f"{location}[{json.dumps(key if isinstance(key, str) else str(key))}]"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _key_list(fields: Mapping[str, Any]) -> str:
    return ", ".join(f"`{name}`" for name in fields)


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({_short(value)})"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _short(value: object, limit: int = 40) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
