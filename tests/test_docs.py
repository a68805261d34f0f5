"""The docs a user has: no reference to a page the repository does not ship, and every
engine configuration key documented in docs/configuration.md."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

from engine.rules.config import EngineConfig

ROOT = Path(__file__).resolve().parents[1]
USER_TEXTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PACKAGES = ("engine", "actors", "eventstore")
MISSING_PAGE = re.compile(r"SPEC(\.md| ?§)")


def config_keys(struct: type[msgspec.Struct], prefix: str = "") -> list[str]:
    """Every key of the engine configuration, as `section.key` (agents: `agents.key`)."""
    keys = []
    for field in msgspec.structs.fields(struct):
        keys.append(prefix + field.encode_name)
        for candidate in (field.type, *getattr(field.type, "__args__", ())):
            inner = getattr(candidate, "__args__", (candidate,))[0]
            if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
                keys.extend(config_keys(inner, f"{prefix}{field.encode_name}."))
    return keys


def test_no_user_text_or_docstring_points_to_a_spec_page_the_repo_does_not_have() -> None:
    assert not (ROOT / "SPEC.md").exists()
    sources = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*USER_TEXTS, *sources]
        if MISSING_PAGE.search(path.read_text())
    ]
    assert offenders == []


def test_every_configuration_key_is_documented_in_docs_configuration_md() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    keys = config_keys(EngineConfig)
    assert "resources.max_cpu_usage" in keys and "agents.isolation" in keys
    sections = {key.split(".")[0] for key in keys}
    assert all(f"## `{section}`" in text for section in sections), sections
    missing = [key for key in keys if f"`{key.rsplit('.', 1)[-1]}`" not in text]
    assert missing == []
