"""Reading workflow files and the engine configuration, reporting every problem at once.

msgspec stops at the first error, and a user fixing a file one error per run
learns to hate the tool. So decoding is two passes: parse the text to plain
Python (a syntax error is one problem with its line and column), then walk the
document against the Struct types ourselves, checking each key and leaf value
with `msgspec.convert`, so that every unknown key, missing key and bad value is
reported together with its JSON-path location (`$.steps[3].after[0]`). Only a
document the walk found clean is converted whole.

Reading and parsing each format is engine/input/formats.py; the walk is
engine/input/walker.py; this module is what callers use.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from engine.input.formats import Format, parse, read_file
from engine.input.walker import fields_by_key, split_msgspec_error, walk
from engine.rules.config import EngineConfig
from engine.rules.errors import Problem, ValidationError
from engine.rules.spec import StepSpec, WorkflowSpec

S = TypeVar("S", bound=msgspec.Struct)

_EMPTY = Problem("$", "the file is empty", "a workflow needs at least `name:` and `steps:`")

# ---------------------------------------------------------------------------
# Public API


def load_workflow(path: str | os.PathLike[str]) -> WorkflowSpec:
    """Read and decode a workflow file; raise ValidationError with every problem."""
    source = str(path)
    text, fmt = read_file(Path(path), source)
    return parse_workflow(text, fmt, source)


def parse_workflow(data: bytes | str, fmt: Format, source: str = "<workflow>") -> WorkflowSpec:
    """Decode workflow text in `fmt`; raise ValidationError with every problem."""
    document = parse(data, fmt, source)
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
        text, fmt = read_file(Path(path), source)
        document = parse(text, fmt, source)
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
    problems = walk(document, type_, source)
    if problems:
        raise ValidationError(problems, source=source)
    try:
        return msgspec.convert(document, type_)
    except msgspec.ValidationError as exc:  # the walk should have caught it; still be clear
        message, location = split_msgspec_error(str(exc))
        raise ValidationError([Problem(location, message)], source=source) from None


def load_workflow_partly(path: str | os.PathLike[str]) -> tuple[WorkflowSpec | None, list[Problem]]:
    """The workflow at `path` and no problems; or its schema problems and a best-effort
    spec of what did parse (None when too little did), so that the cross-field rules can
    run on it too. A file that cannot be read or parsed raises ValidationError."""
    source = str(path)
    text, fmt = read_file(Path(path), source)
    document = parse(text, fmt, source)
    if document is None:
        raise ValidationError([_EMPTY], source=source)
    problems = walk(document, WorkflowSpec, source)
    if not problems:
        return decode(document, WorkflowSpec, source), []
    return _salvage_workflow(document), problems


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
    for key, field in fields_by_key(type_).items():
        if key in value:
            with contextlib.suppress(msgspec.ValidationError):
                valid[field.name] = msgspec.convert(value[key], field.type)
    return valid
