"""Reading a workflow or config file and parsing it to plain Python: YAML, JSON or TOML.

A file is read without blocking (a FIFO is refused, not waited on), at most
MAX_FILE_BYTES, as UTF-8; each format's syntax error becomes one problem with
its line and column. YAML is read as YAML 1.2 scalars with duplicate keys
refused. The schema walk over the result is engine/input/walker.py.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from engine.rules.errors import Problem, ValidationError

Format = Literal["yaml", "json", "toml"]

MAX_FILE_BYTES = 1024 * 1024
"""Larger files are refused unread: a workflow of 50 steps is a few kilobytes."""

FORMATS: Mapping[str, Format] = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}


def read_file(path: Path, source: str) -> tuple[str, Format]:
    def refuse(message: str, hint: str) -> ValidationError:
        return ValidationError([Problem("$", message, hint)], source=source)

    try:
        # Non-blocking open: a FIFO would otherwise block until someone writes to it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise refuse("no such file", "check the path") from None
    except OSError as exc:
        hint = (
            "check its permissions"
            if exc.errno in (errno.EACCES, errno.EPERM)
            else "check the path"
        )
        raise refuse(f"cannot read the file: {exc.strerror or exc}", hint) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise refuse("is a directory, not a file", "name a workflow file")
        if not stat.S_ISREG(mode):
            raise refuse("is not a regular file", "name a regular file")
        fmt = FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise refuse(
                f"unsupported file type `{path.suffix or '(none)'}`",
                "use a .yaml, .yml, .json or .toml file",
            )
        with os.fdopen(fd, "rb", closefd=False) as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc.strerror or exc}", "check the disk") from None
    finally:
        os.close(fd)
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


def parse(data: bytes | str, fmt: Format, source: str) -> object:
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
