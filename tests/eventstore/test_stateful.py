from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventstore import ConcurrencyError, EventStore
from tests.eventstore.events import Counted, Event, Opened

stream_names = st.sampled_from(["a", "b", "run-1", "run-2", "ü"])
events = st.lists(
    st.one_of(
        st.builds(Counted, st.integers(-(2**40), 2**40), st.text(max_size=5)),
        st.builds(Opened, st.text(max_size=5)),
    ),
    max_size=4,
)


class StoreMachine(RuleBasedStateMachine):
    """The store behaves like a list of (stream, event) and a dict of streams."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="eventstore-stateful-")
        self.store: EventStore[Event] = EventStore.open(self.directory + "/s", Event)
        self.log: list[tuple[str, Event]] = []
        self.by_stream: dict[str, list[int]] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory)

    @rule(stream=stream_names, batch=events, guard=st.sampled_from(["none", "right", "stale"]))
    def append(self, stream: str, batch: list[Event], guard: str) -> None:
        version = len(self.by_stream.get(stream, []))
        expected = {"none": None, "right": version, "stale": version + 1}[guard]
        if guard == "stale" and batch:
            try:
                self.store.append(stream, batch, expected)
            except ConcurrencyError as error:
                assert error.actual == version
                return
            raise AssertionError("a stale expected_version was accepted")
        positions = self.store.append(stream, batch, expected)
        assert positions == list(range(len(self.log) + 1, len(self.log) + len(batch) + 1))
        for event in batch:
            self.log.append((stream, event))
            self.by_stream.setdefault(stream, []).append(len(self.log))

    @rule(stream=stream_names, from_version=st.integers(1, 6))
    def read_stream(self, stream: str, from_version: int) -> None:
        got = [
            (r.position, r.version, r.event) for r in self.store.read_stream(stream, from_version)
        ]
        positions = self.by_stream.get(stream, [])
        want = [
            (p, v, self.log[p - 1][1])
            for v, p in enumerate(positions, start=1)
            if v >= from_version
        ]
        assert got == want

    @rule(start=st.integers(1, 30), length=st.none() | st.integers(0, 10))
    def read_all(self, start: int, length: int | None) -> None:
        end = None if length is None else start + length
        got = [(r.position, r.stream, r.event) for r in self.store.read_all(start, end)]
        last = len(self.log) if end is None else min(end, len(self.log))
        assert got == [(p, *self.log[p - 1]) for p in range(start, last + 1)]

    @precondition(lambda self: bool(self.log))
    @rule(data=st.data())
    def read_positions(self, data: st.DataObject) -> None:
        wanted = data.draw(st.lists(st.integers(1, len(self.log)), max_size=6))
        got = [(r.position, r.stream, r.event) for r in self.store.read_positions(wanted)]
        assert got == [(p, *self.log[p - 1]) for p in wanted]

    @precondition(lambda self: len(self.log) < 200)
    @rule(durability=st.sampled_from(["sync", "relaxed"]))
    def reopen(self, durability: str) -> None:
        self.store.close()
        self.store = EventStore.open(self.directory + "/s", Event, durability=durability)  # type: ignore[arg-type]

    @invariant()
    def metadata_matches(self) -> None:
        assert self.store.last_position() == len(self.log)
        infos = self.store.streams()
        assert {i.name: (i.version, i.first_position, i.last_position) for i in infos} == {
            name: (len(ps), ps[0], ps[-1]) for name, ps in self.by_stream.items()
        }
        for name, positions in self.by_stream.items():
            assert self.store.stream_version(name) == len(positions)


StoreMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestStoreAgainstModel = StoreMachine.TestCase
