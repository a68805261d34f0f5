"""Reading workflow files and the engine configuration, reporting every problem at once.

msgspec stops at the first error, and a user fixing a file one error per run
learns to hate the tool. So decoding is two passes: parse the text to plain
Python (a syntax error is one problem with its line and column), then walk the
document against the Struct types ourselves, checking each key and leaf value
with `msgspec.convert`, so that every unknown key, missing key and bad value is
reported together with its JSON-path location (`$.steps[3].after[0]`). Only a
document the walk found clean is converted whole.
"""

from __future__ import annotations

import contextlib
import difflib
import enum
import functools
import json
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec
import yaml

from engine.rules.config import EngineConfig
from engine.rules.errors import Problem, ValidationError
from engine.rules.spec import StepSpec, WorkflowSpec

Format = Literal["yaml", "json", "toml"]

MAX_FILE_BYTES = 1024 * 1024
"""Larger files are refused unread: a workflow of 50 steps is a few kilobytes."""

MAX_NODES = 200_000
"""Values walked per document; stops YAML alias bombs and self-referencing aliases."""

MAX_INT = 2**63 - 1
"""Whole numbers in `inputs` and `with` (free-form values) must fit in 64 bits, as the
log stores them."""

FORMATS: Mapping[str, Format] = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}

S = TypeVar("S", bound=msgspec.Struct)

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


_EMPTY = Problem("$", "the file is empty", "a workflow needs at least `name:` and `steps:`")

# ---------------------------------------------------------------------------
# Public API


def load_workflow(path: str | os.PathLike[str]) -> WorkflowSpec:
    """Read and decode a workflow file; raise ValidationError with every problem."""
    source = str(path)
    text, fmt = _read(Path(path), source)
    return parse_workflow(text, fmt, source)


def parse_workflow(data: bytes | str, fmt: Format, source: str = "<workflow>") -> WorkflowSpec:
    """Decode workflow text in `fmt`; raise ValidationError with every problem."""
    document = _parse(data, fmt, source)
    if document is None:
        raise ValidationError([_EMPTY], source=source)
    return workflow_from_data(document, source)


def workflow_from_data(document: object, source: str = "<workflow>") -> WorkflowSpec:
    """Decode an already-parsed document (dicts, lists, scalars) into a WorkflowSpec."""
    return decode(document, WorkflowSpec, source)


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] = os.environ
) -> EngineConfig:
    """The engine configuration: the file at `path` (or `$WFA_CONFIG`), then env overrides.

    Without a file every key takes its default. Overrides: `WFA_DATA` sets
    storage.path, `OTEL_EXPORTER_OTLP_ENDPOINT` and `OTEL_SERVICE_NAME` set
    telemetry.otlp_endpoint and telemetry.service_name.
    """
    if path is None and env.get("WFA_CONFIG"):
        path = env["WFA_CONFIG"]
    if path is None:
        config = EngineConfig()
    else:
        source = str(path)
        text, fmt = _read(Path(path), source)
        document = _parse(text, fmt, source)
        config = decode({} if document is None else document, EngineConfig, source)
    return apply_env_overrides(config, env)


def apply_env_overrides(config: EngineConfig, env: Mapping[str, str]) -> EngineConfig:
    """`config` with WFA_DATA and the standard OTEL_* variables applied."""
    if env.get("WFA_DATA"):
        config = msgspec.structs.replace(
            config, storage=msgspec.structs.replace(config.storage, path=env["WFA_DATA"])
        )
    telemetry = config.telemetry
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        telemetry = msgspec.structs.replace(
            telemetry, otlp_endpoint=env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        )
    if env.get("OTEL_SERVICE_NAME"):
        telemetry = msgspec.structs.replace(telemetry, service_name=env["OTEL_SERVICE_NAME"])
    if telemetry is not config.telemetry:
        config = msgspec.structs.replace(config, telemetry=telemetry)
    return config


def decode(document: object, type_: type[S], source: str) -> S:
    """Check `document` against `type_` completely, then convert it; raise every problem."""
    problems = _walk(document, type_, source)
    if problems:
        raise ValidationError(problems, source=source)
    try:
        return msgspec.convert(document, type_)
    except msgspec.ValidationError as exc:  # the walk should have caught it; still be clear
        message, location = _split_msgspec_error(str(exc))
        raise ValidationError([Problem(location, message)], source=source) from None


def load_workflow_partly(path: str | os.PathLike[str]) -> tuple[WorkflowSpec | None, list[Problem]]:
    """The workflow at `path` and no problems; or its schema problems and a best-effort
    spec of what did parse (None when too little did), so that the cross-field rules can
    run on it too. A file that cannot be read or parsed raises ValidationError."""
    source = str(path)
    text, fmt = _read(Path(path), source)
    document = _parse(text, fmt, source)
    if document is None:
        raise ValidationError([_EMPTY], source=source)
    problems = _walk(document, WorkflowSpec, source)
    if not problems:
        return decode(document, WorkflowSpec, source), []
    return _salvage_workflow(document), problems


def _walk(document: object, type_: type[msgspec.Struct], source: str) -> list[Problem]:
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


def _salvage_workflow(document: object) -> WorkflowSpec | None:
    """A WorkflowSpec of the parts of a schema-invalid document that are valid on their own.

    Steps keep their positions (a step that is not a mapping, or has no usable id, gets
    a placeholder id that no `after` can name), so that locations stay true."""
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list):
        return None
    steps = []
    for position, item in enumerate(document["steps"]):
        fields = _valid_fields(item, StepSpec)
        raw_id = item.get("id") if isinstance(item, dict) else None
        fields["id"] = raw_id if isinstance(raw_id, str) else f"<steps[{position}]>"
        steps.append(StepSpec(**fields))
    fields = _valid_fields(document, WorkflowSpec)
    fields.setdefault("name", "<workflow>")
    fields["steps"] = tuple(steps)
    return WorkflowSpec(**fields)


def _valid_fields(value: object, type_: type[msgspec.Struct]) -> dict[str, Any]:
    """The fields of mapping `value` whose values are valid for `type_`, by field name."""
    if not isinstance(value, dict):
        return {}
    valid: dict[str, Any] = {}
    for key, field in _fields_by_key(type_).items():
        if key in value:
            with contextlib.suppress(msgspec.ValidationError):
                valid[field.name] = msgspec.convert(value[key], field.type)
    return valid


# ---------------------------------------------------------------------------
# Reading and parsing


def _read(path: Path, source: str) -> tuple[str, Format]:
    if path.is_dir():
        raise ValidationError(
            [Problem("$", "is a directory, not a file", "name a workflow file")], source=source
        )
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        problem = Problem(
            "$",
            f"unsupported file type `{path.suffix or '(none)'}`",
            "use a .yaml, .yml, .json or .toml file",
        )
        raise ValidationError([problem], source=source)
    try:
        # Non-blocking open: a FIFO would otherwise block until someone writes to it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValidationError(
                    [Problem("$", "is not a regular file", "name a regular file")],
                    source=source,
                )
            raw = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ValidationError(
            [Problem("$", "no such file", "check the path")], source=source
        ) from None
    except OSError as exc:
        raise ValidationError(
            [Problem("$", f"cannot read the file: {exc.strerror or exc}", "check its permissions")],
            source=source,
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        problem = Problem(
            "$",
            f"the file is larger than {MAX_FILE_BYTES // 1024} KiB",
            "a workflow file is a few kilobytes; is this the right file?",
        )
        raise ValidationError([problem], source=source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = Problem(f"byte {exc.start}", "the file is not UTF-8 text", "save it as UTF-8")
        raise ValidationError([problem], source=source) from None
    return text, fmt


def _parse(data: bytes | str, fmt: Format, source: str) -> object:
    """Plain Python from text; None for an empty document."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            problem = Problem(f"byte {exc.start}", "the text is not UTF-8", "save it as UTF-8")
            raise ValidationError([problem], source=source) from None
    try:
        if fmt == "yaml":
            return _parse_yaml(data, source)
        if fmt == "json":
            return _parse_json(data, source) if data.strip() else None
        if fmt == "toml":
            return _parse_toml(data, source) if data.strip() else None
    except RecursionError:
        problem = Problem("$", "the document is nested too deeply", "flatten it")
        raise ValidationError([problem], source=source) from None
    raise ValueError(f"unknown format {fmt!r}; expected yaml, json or toml")


class _YamlLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML 1.2 scalars and duplicate-key detection.

    PyYAML follows YAML 1.1, where `on`, `yes` and `off` are booleans (so
    `retry: {on: [timeout]}` would arrive with the key True) and bare dates
    become datetime objects. Here only true/false are booleans and dates stay
    strings, as in JSON.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[Problem] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                mark = key_node.start_mark
                self.duplicates.append(
                    Problem(
                        f"line {mark.line + 1}, column {mark.column + 1}",
                        f"duplicate key `{key}`",
                        "each key may appear once in a mapping; remove or merge the copies",
                    )
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _parse_yaml(text: str, source: str) -> object:
    loader = _YamlLoader(text)
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "$"
        message = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context:
            start = exc.context_mark
            at = (
                f" that starts at line {start.line + 1}, column {start.column + 1}" if start else ""
            )
            message = f"{exc.problem} ({exc.context}{at})"
        problem = Problem(where, f"YAML syntax error: {message}", "fix the YAML syntax")
        raise ValidationError([problem], source=source) from None
    except yaml.YAMLError as exc:
        raise ValidationError(
            [Problem("$", f"YAML error: {exc}", "fix the YAML syntax")], source=source
        ) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ValidationError(loader.duplicates, source=source)
    return document


def _parse_json(text: str, source: str) -> object:
    duplicates: list[Problem] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(
                    Problem("$", f"duplicate key `{key}`", "each key may appear once in an object")
                )
            result[key] = value
        return result

    try:
        document = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        problem = Problem(
            f"line {exc.lineno}, column {exc.colno}",
            f"JSON syntax error: {exc.msg}",
            "fix the JSON syntax",
        )
        raise ValidationError([problem], source=source) from None
    if duplicates:
        raise ValidationError(duplicates, source=source)
    return document


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _parse_toml(text: str, source: str) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = "$"
        found = _TOML_POSITION.search(message)
        if found:
            where = f"line {found.group(1)}, column {found.group(2)}"
            message = message[: found.start()]
        problem = Problem(where, f"TOML syntax error: {message}", "fix the TOML syntax")
        raise ValidationError([problem], source=source) from None


# ---------------------------------------------------------------------------
# The walk


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
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
                self.problems.append(
                    Problem(
                        location,
                        f"the number {_short(value)} is too large",
                        f"whole numbers here lie within ±{MAX_INT}; quote it to keep it as text",
                    )
                )
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
        fields = _fields_by_key(type_)
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
            message, sub = _split_msgspec_error(str(exc))
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


@functools.cache
def _fields_by_key(type_: type) -> Mapping[str, msgspec.structs.FieldInfo]:
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


def _split_msgspec_error(text: str) -> tuple[str, str]:
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
