from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from eventstore import EventStore
from tests.eventstore.events import Event


@pytest.fixture
def store_path(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: pathlib.Path) -> Iterator[EventStore[Event]]:
    with EventStore.open(store_path, Event) as opened:
        yield opened
