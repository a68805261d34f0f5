"""Removed (and replaced) streams leave gaps: every reader (read_all, follow, read_stream, streams,
position_at) skips them, positions keep increasing, and a position missing without
having been removed is still damage."""

from __future__ import annotations

import itertools
import pathlib
import shutil
import tempfile
import threading

import hypothesis.strategies as st
import lmdb
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventstore import CorruptEventError, EventStore, Recorded, check_store
from eventstore import _format as fmt
from tests.eventstore.events import Counted, Event, Opened

STREAMS = ["a", "b", "c", "d"]
TOMBSTONES = "removed"


def take(store: EventStore[Event], start: int, count: int) -> list[Recorded[Event]]:
    """The first `count` records a follower from `start` yields (within 30 s)."""
    stop = threading.Event()
    timer = threading.Timer(30, stop.set)
    timer.start()
    try:
        return list(itertools.islice(store.follow(start, stop=stop), count))
    finally:
        timer.cancel()


class GapMachine(RuleBasedStateMachine):
    """The store is the model's log of (position -> stream, version, event) minus the
    positions of removed streams; positions are never given out twice."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="eventstore-gaps-")
        self.store: EventStore[Event] = EventStore.open(self.directory + "/s", Event)
        self.log: dict[int, tuple[str, int, Event]] = {}
        self.versions: dict[str, int] = {}
        self.given = 0  # the highest position ever given out
        self.removed = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.directory)

    def expected(self, start: int = 1, end: int | None = None) -> list[tuple[int, str, int, Event]]:
        top = self.given if end is None else end
        return [(p, *self.log[p]) for p in sorted(self.log) if start <= p <= top]

    @rule(stream=st.sampled_from(STREAMS), size=st.integers(1, 4))
    def append(self, stream: str, size: int) -> None:
        version = self.versions.get(stream, 0)
        batch = [Counted(self.given + i, note=stream) for i in range(size)]
        positions = self.store.append(stream, batch, version)
        assert positions == list(range(self.given + 1, self.given + size + 1))
        for offset, (position, event) in enumerate(zip(positions, batch, strict=True)):
            self.log[position] = (stream, version + offset + 1, event)
        self.versions[stream] = version + size
        self.given += size

    @rule(streams=st.sets(st.sampled_from(STREAMS), min_size=1))
    def remove(self, streams: set[str]) -> None:
        tombstone = Opened(",".join(sorted(streams)))
        positions = self.store.remove_streams(sorted(streams), TOMBSTONES, [tombstone])
        assert positions == [self.given + 1]  # after every position, removed ones too
        gone = [p for p, (s, _, _) in self.log.items() if s in streams]
        for p in gone:
            del self.log[p]
        self.removed += len(gone)
        for stream in streams:
            self.versions.pop(stream, None)
        self.given += 1
        self.versions[TOMBSTONES] = self.versions.get(TOMBSTONES, 0) + 1
        self.log[self.given] = (TOMBSTONES, self.versions[TOMBSTONES], tombstone)

    @rule(stream=st.sampled_from(STREAMS), size=st.integers(1, 3))
    def replace(self, stream: str, size: int) -> None:
        """The stream's old events become gaps; the new ones start again from version 1."""
        batch = [Counted(self.given + i, note=f"{stream} again") for i in range(size)]
        positions = self.store.replace_stream(stream, batch)
        assert positions == list(range(self.given + 1, self.given + size + 1))
        gone = [p for p, (s, _, _) in self.log.items() if s == stream]
        for p in gone:
            del self.log[p]
        self.removed += len(gone)
        for offset, (position, event) in enumerate(zip(positions, batch, strict=True)):
            self.log[position] = (stream, offset + 1, event)
        self.versions[stream] = size
        self.given += size

    @rule()
    def check(self) -> None:
        report = check_store(self.directory + "/s", Event)
        assert report.sound, report.problems

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = EventStore.open(self.directory + "/s", Event)

    @rule(start=st.integers(1, 40), length=st.none() | st.integers(0, 12))
    def read_all(self, start: int, length: int | None) -> None:
        end = None if length is None else start + length
        got = [(r.position, r.stream, r.version, r.event) for r in self.store.read_all(start, end)]
        assert got == self.expected(start, end)

    @precondition(lambda self: self.given < 150)
    @rule(start=st.integers(1, 40))
    def follow(self, start: int) -> None:
        """A follower from `start` sees the log, gaps skipped, then what comes next."""
        start = min(start, self.given + 1)
        want = self.expected(start)
        self.append("a", 1)
        want.append((self.given, *self.log[self.given]))
        got = [
            (r.position, r.stream, r.version, r.event) for r in take(self.store, start, len(want))
        ]
        assert got == want

    @precondition(lambda self: bool(self.log))
    @rule(data=st.data())
    def position_at(self, data: st.DataObject) -> None:
        records = list(self.store.read_all())
        target = data.draw(st.sampled_from(records))
        first = next(r for r in records if r.recorded_at >= target.recorded_at)
        assert self.store.position_at(target.recorded_at) == first.position

    @invariant()
    def metadata_matches(self) -> None:
        assert self.store.last_position() == self.given
        assert self.store.removed_positions() == self.removed
        by_stream: dict[str, list[int]] = {}
        for p, (s, _, _) in sorted(self.log.items()):
            by_stream.setdefault(s, []).append(p)
        assert {
            i.name: (i.version, i.first_position, i.last_position) for i in self.store.streams()
        } == {s: (self.versions[s], ps[0], ps[-1]) for s, ps in by_stream.items()}
        for stream in STREAMS:
            got = [(r.position, r.version) for r in self.store.read_stream(stream)]
            assert got == [(p, self.log[p][1]) for p in by_stream.get(stream, [])]
            assert self.store.stream_version(stream) == self.versions.get(stream, 0)


GapMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestGapsAgainstModel = GapMachine.TestCase


def test_a_position_missing_without_a_removal_is_still_damage(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "s"
    store: EventStore[Event]
    with EventStore.open(path, Event) as store:
        store.append("a", [Counted(i) for i in range(5)])
        store.remove_streams(["a"], TOMBSTONES, [Opened("a")])
        store.append("b", [Counted(i) for i in range(3)])  # positions 7, 8, 9
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        assert txn.delete(fmt.pack_u64(8), db=env.open_db(fmt.DB_EVENTS, txn=txn))
    env.close()
    store: EventStore[Event]
    with EventStore.open(path, Event) as store:
        assert [r.position for r in store.read_all(1, 7)] == [6, 7]  # the gap 1-5 is fine
        with pytest.raises(CorruptEventError, match="position 8"):
            list(store.read_all())


def test_a_follower_keeps_following_across_a_removal_made_meanwhile(
    tmp_path: pathlib.Path,
) -> None:
    """A follower that already read a stream, and one that had not, both go on past its
    removal to what is appended next; neither sees a removed event it had not read."""
    with EventStore.open(tmp_path / "s", Event) as store:
        store.append("a", [Counted(1), Counted(2)])
        stop = threading.Event()
        seen: list[tuple[int, str]] = []
        read_a = threading.Event()

        def follow() -> None:
            for r in store.follow(1, stop=stop):
                seen.append((r.position, r.stream))
                if r.position == 2:
                    read_a.set()
                if r.stream == "c":
                    return

        follower = threading.Thread(target=follow)
        follower.start()
        assert read_a.wait(30)
        store.append("b", [Counted(3)])
        store.remove_streams(["a", "b"], TOMBSTONES, [Opened("a,b")])
        store.append("c", [Counted(5)])
        follower.join(30)
        stop.set()
        follower.join(30)
        assert not follower.is_alive()
        # b (position 3) was removed before or after the follower read it: either is right
        assert seen in (
            [(1, "a"), (2, "a"), (3, "b"), (4, TOMBSTONES), (5, "c")],
            [(1, "a"), (2, "a"), (4, TOMBSTONES), (5, "c")],
        )
        late = take(store, 1, 2)
        assert [(r.position, r.stream) for r in late] == [(4, TOMBSTONES), (5, "c")]
