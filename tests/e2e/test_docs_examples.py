"""Every workflow in README.md and docs/*.md validates, and the key reference lists every
key, so the docs cannot drift from the code; the README's examples also run."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from engine.input.loading import load_config, parse_workflow
from engine.input.validation import validate_config, validate_file, validate_workflow
from engine.rules.config import EngineConfig
from engine.rules.spec import (
    CacheSpec,
    ConcurrencySpec,
    RateLimitSpec,
    ResourcesSpec,
    RetrySpec,
    StepSpec,
    WaitForSpec,
    WorkflowSpec,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)
CONFIG_KEYS = {f.encode_name for f in msgspec.structs.fields(EngineConfig)}
# Caps at 100%: on a busy shared machine the default caps would hold the steps back.
NO_CAPS = "resources: {max_cpu_usage: 100, max_memory_usage: 100, max_storage_usage: 100}\n"


def blocks(language: str) -> list[tuple[str, str]]:
    """(where, text) of every fenced block in `language`, in document order; a block
    whose first line says it is "not a wfa file" (another program's config) is left out."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            if match.group(1) == language and "not a wfa file" not in match.group(2)[:80]:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def test_the_docs_hold_workflows_and_configs() -> None:
    kinds = [_kind(yaml.safe_load(text)) for _, text in blocks("yaml")]
    assert kinds.count("workflow") >= 3 and kinds.count("config") >= 1


def _kind(document: Any) -> str:
    if isinstance(document, dict) and "steps" in document:
        return "workflow"
    if isinstance(document, dict) and set(document) <= CONFIG_KEYS:
        return "config"
    return "other"


@pytest.mark.parametrize(("where", "text"), blocks("yaml"), ids=lambda v: str(v)[:40])
def test_every_yaml_block_of_the_docs_is_valid(where: str, text: str, tmp_path: Path) -> None:
    """A workflow validates under the config block before it in the same document (the
    docs show the agents a workflow needs that way); a fragment gets a name."""
    kind = _kind(yaml.safe_load(text))
    assert kind != "other", f"{where}: neither a workflow nor an engine config"
    if kind == "config":
        assert validate_config(config_of(text, tmp_path)) == [], where
        return
    config = EngineConfig()
    doc, _, line = where.partition(":")
    for other_where, other in blocks("yaml"):
        other_doc, _, other_line = other_where.partition(":")
        earlier = other_doc == doc and int(other_line) < int(line)
        if earlier and _kind(yaml.safe_load(other)) == "config":
            config = config_of(other, tmp_path)
    if "workflow:" in text:  # runs child workflow files: write this doc's files, load it
        path = write_files(doc, tmp_path, text)
        assert validate_file(path, config)[1] == [], where
        return
    if "name" not in yaml.safe_load(text):
        text = "name: fragment\n" + text
    spec = parse_workflow(text, "yaml", where)
    assert validate_workflow(spec, config) == [], where


def write_files(doc: str, tmp_path: Path, text: str) -> Path:
    """Every block of `doc` whose first line names its file (`# children/calc.yaml`),
    written there under `tmp_path`; the path of `text`'s own file."""
    own = None
    for where, block in blocks("yaml"):
        header = block.split("\n", 1)[0]
        if where.startswith(doc + ":") and header.startswith("# ") and header.endswith(".yaml"):
            path = tmp_path / header[2:].strip()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block)
            own = path if block == text else own
    assert own is not None, f"{doc}: a block with `workflow:` needs a `# file.yaml` first line"
    return own


def config_of(text: str, tmp_path: Path) -> EngineConfig:
    path = tmp_path / "wfa.yaml"
    path.write_text(text)
    return load_config(path, {})


def test_every_python_block_of_the_docs_parses() -> None:
    python = blocks("python")
    assert python
    for where, text in python:
        ast.parse(text, filename=where)


def _reference_keys() -> dict[str, set[str]]:
    """The keys of each table of docs/workflow-file.md's reference, by the heading above."""
    text = (ROOT / "docs" / "workflow-file.md").read_text()
    reference = text[text.index("## Workflow file reference") :]
    tables: dict[str, set[str]] = {}
    heading = ""
    for line in reference.splitlines():
        if line.startswith("#") or re.match(r"^`\w+`[ :]", line):
            heading = line
        found = re.match(r"^\| `([\w.*]+)` \|", line)
        if found:
            tables.setdefault(heading, set()).add(found.group(1))
    return tables


@pytest.mark.parametrize(
    ("heading", "struct"),
    [
        ("### The workflow", WorkflowSpec),
        ("### A step", StepSpec),
        ("`retry`:", RetrySpec),
        ("`resources`", ResourcesSpec),
        ("`cache`:", CacheSpec),
        ("`wait_for`:", WaitForSpec),
        ("`concurrency` (workflow):", ConcurrencySpec),
        ("`rate_limit` (step)", RateLimitSpec),
    ],
)
def test_the_reference_lists_every_key(heading: str, struct: type[msgspec.Struct]) -> None:
    tables = _reference_keys()
    (keys,) = [keys for title, keys in tables.items() if title.startswith(heading)]
    assert keys == {f.encode_name for f in msgspec.structs.fields(struct)}


def test_the_readme_links_the_reference_and_not_a_missing_spec() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/workflow-file.md#workflow-file-reference" in readme
    assert "SPEC.md" not in readme


def wfa(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("wfa")
    command = [executable] if executable else [sys.executable, "-m", "engine.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
    return subprocess.run(
        [*command, "--data", str(cwd / "data"), "--config", str(cwd / "wfa.yaml"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def test_the_readme_workflow_runs_waits_at_its_gate_and_finishes_once_approved(
    tmp_path: Path,
) -> None:
    (_, text), *_ = blocks("yaml")
    assert text.startswith("# flow.yaml")
    (tmp_path / "flow.yaml").write_text(text)
    (tmp_path / "wfa.yaml").write_text(NO_CAPS)
    first = wfa(tmp_path, "run", "flow.yaml", "-i", "branch=main", "--json")
    assert first.returncode == 3, first.stderr
    run = json.loads(first.stdout)
    assert run["waiting_for"] == ["approval of gate"]
    approved = wfa(tmp_path, "approve", run["run_id"], "gate", "--json")
    assert approved.returncode == 0, approved.stderr
    result = json.loads(approved.stdout)
    assert result["status"] == "succeeded"
    steps = {s["id"]: s for s in result["steps"]}
    assert (steps["gate"]["status"], steps["gate"]["outputs"]) == ("succeeded", {})
    assert steps["release"]["status"] == "succeeded"


def test_the_readme_embedding_example_runs(tmp_path: Path) -> None:
    python = [text for where, text in blocks("python") if where.startswith("README.md")]
    assert python and "Engine(" in python[0]
    (tmp_path / "flow.py").write_text(python[0])
    (tmp_path / "wfa.yaml").write_text(NO_CAPS)
    env = {**os.environ, "WFA_CONFIG": str(tmp_path / "wfa.yaml")}
    env.pop("WFA_DATA", None)
    result = subprocess.run(
        [sys.executable, "flow.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("succeeded ")
