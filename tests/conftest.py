"""Suite-wide collection order: the tests that need a real Jaeger run last.

On a fresh machine Jaeger is built once from its Go module, which takes minutes;
CI starts that build in the background before the tests (`.ci/run`), so running
its tests last gives the build the whole suite's time to finish.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.startswith("tests/e2e/test_jaeger.py"))
