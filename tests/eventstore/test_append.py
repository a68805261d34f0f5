from __future__ import annotations

import pathlib
import signal
import threading
import time

import pytest

from eventstore import ConcurrencyError, EventStore, PayloadTooLargeError
from tests.eventstore.events import Counted, Event, Opened


def test_append_returns_dense_global_positions(store: EventStore[Event]) -> None:
    """Positions are global, 1-based and dense across streams."""
    assert store.append("a", [Opened("a"), Counted(1)]) == [1, 2]
    assert store.append("b", [Opened("b")]) == [3]
    assert store.append("a", [Counted(2)]) == [4]
    assert store.last_position() == 4


def test_empty_append_is_a_no_op(store: EventStore[Event]) -> None:
    """Appending an empty list returns [] and writes nothing, whatever the expected version."""
    assert store.append("a", [], expected_version=5) == []
    assert store.last_position() == 0
    assert store.stream_info("a") is None


def test_expected_version_guards_the_stream(store: EventStore[Event]) -> None:
    """A right expected_version appends; a stale one raises ConcurrencyError naming
    stream, expected and actual, and writes nothing."""
    store.append("a", [Opened("a")], expected_version=0)
    store.append("a", [Counted(1)], expected_version=1)
    with pytest.raises(ConcurrencyError) as caught:
        store.append("a", [Counted(2), Counted(3)], expected_version=1)
    assert (caught.value.stream, caught.value.expected, caught.value.actual) == ("a", 1, 2)
    assert "'a'" in str(caught.value)
    with pytest.raises(ConcurrencyError):
        store.append("new", [Opened("x")], expected_version=3)
    assert store.last_position() == 2
    assert store.stream_version("a") == 2
    assert store.stream_info("new") is None


def test_payload_over_the_limit_is_refused(store_path: pathlib.Path) -> None:
    """An event encoding to more than max_payload raises PayloadTooLargeError naming
    stream, size and limit, and the whole append writes nothing."""
    with EventStore.open(store_path, Event, max_payload=100) as store:
        with pytest.raises(PayloadTooLargeError) as caught:
            store.append("big", [Counted(1), Counted(2, note="x" * 200)])
        error = caught.value
        assert error.stream == "big" and error.limit == 100 and error.size > 200
        assert "'big'" in str(error) and str(error.size) in str(error) and "100" in str(error)
        assert store.last_position() == 0


def test_an_event_that_would_not_read_back_is_refused(store: EventStore[Event]) -> None:
    """Encoding does not check field types (`None` in an `int` field encodes), but every
    reader would then fail on the event: append and replace_stream raise ValueError
    naming the event and the field, and write nothing."""
    store.append("a", [Opened("a")])
    wrong = Counted(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError) as caught:
        store.append("a", [Counted(1), wrong])
    assert "event 2 of 2 for stream 'a' would not read back" in str(caught.value)
    assert "$.n" in str(caught.value) and "nothing was written" in str(caught.value)
    with pytest.raises(ValueError):
        store.replace_stream("a", [wrong])
    assert store.last_position() == 1
    assert [r.event for r in store.read_stream("a")] == [Opened("a")]


def test_invalid_stream_names_are_rejected(store: EventStore[Event]) -> None:
    """Empty names, names containing NUL and overlong names raise ValueError."""
    for name in ["", "a\0b", "x" * 401]:
        with pytest.raises(ValueError):
            store.append(name, [Counted(1)])


def test_a_stale_append_in_a_shared_batch_fails_alone(store: EventStore[Event]) -> None:
    """When many threads append at once, stale appends fail and all others commit."""
    store.append("contested", [Opened("c")])
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def contend(i: int) -> None:
        barrier.wait()
        ok = True
        try:
            store.append("contested", [Counted(i)], expected_version=1)
        except ConcurrencyError:
            ok = False
        store.append(f"own-{i}", [Counted(i)], expected_version=0)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert store.stream_version("contested") == 2
    assert all(store.stream_version(f"own-{i}") == 1 for i in range(16))
    assert store.last_position() == 18


def test_an_interrupted_append_does_not_strand_the_appends_behind_it(
    store: EventStore[Event],
) -> None:
    """Callers are woken in a chain; a caller whose wait is interrupted (here by a
    signal handler raising, as KeyboardInterrupt does) must not break the chain:
    every append queued behind it still returns, and its own append still commits."""

    class Interrupted(Exception):
        pass

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    store.append("s", [Counted(0)])
    writer = store._shared.writer
    done: list[int] = []

    def append_one(i: int) -> None:
        done.extend(store.append(f"t{i}", [Counted(i)]))

    early = [threading.Thread(target=append_one, args=(i,)) for i in range(3)]
    late = [threading.Thread(target=append_one, args=(i,)) for i in range(3, 6)]

    def start_late() -> None:
        for thread in late:
            thread.start()

    starter = threading.Timer(0.05, start_late)
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with store._shared.guard.exclusive():  # the writer cannot open a transaction
            for thread in early:
                thread.start()
            deadline = time.monotonic() + 5
            while len(writer._queue) < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            starter.start()
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            with pytest.raises(Interrupted):
                store.append("main", [Counted(99)])
            assert len(done) == 0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    for thread in [*early, *late]:
        thread.join(10)
        assert not thread.is_alive()
    assert len(done) == 6
    assert store.last_position() == 8  # the interrupted append committed too
    assert store.stream_version("main") == 1
