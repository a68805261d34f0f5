"""The shipped example configuration documents exactly the built-in defaults, and
example resource caps (there are none by default)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from engine.input.loading import load_config
from engine.rules.config import EngineConfig, ResourcesConfig

EXAMPLE = Path(__file__).parents[3] / "wfa.example.yaml"
CAPS = ("max_cpu_usage", "max_memory_usage", "max_storage_usage", "max_network_usage")


def test_wfa_example_yaml_loads_to_the_defaults_plus_example_caps() -> None:
    example = load_config(EXAMPLE, {})
    assert [getattr(example.resources, cap) for cap in CAPS] == [80, 70, 85, 60]
    uncapped = msgspec.structs.replace(example.resources, **dict.fromkeys(CAPS))
    assert msgspec.structs.replace(example, resources=uncapped) == EngineConfig()


def test_there_are_no_machine_wide_caps_by_default() -> None:
    assert [getattr(ResourcesConfig(), cap) for cap in CAPS] == [None] * 4
