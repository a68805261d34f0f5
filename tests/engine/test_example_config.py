"""The shipped example configuration documents exactly the built-in defaults."""

from __future__ import annotations

from pathlib import Path

from engine.config import EngineConfig
from engine.loading import load_config

EXAMPLE = Path(__file__).parents[2] / "wfa.example.yaml"


def test_wfa_example_yaml_loads_to_the_defaults() -> None:
    assert load_config(EXAMPLE, {}) == EngineConfig()
