"""`wfa runs` pages through the run index, a data directory written before the index
existed is indexed on open with nothing lost, and `wfa check --rebuild-index`
reproduces the live index."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import lmdb
import msgspec
import pytest

from engine import Engine
from engine.cli.check import check_run_index
from engine.input.datadir import EVENTS
from engine.rules.events import Event, RunStarted, RunSubmitted, RunSucceeded, run_stream
from engine.rules.state import RunStatus
from engine.run_index import KEYS, ROWS, RunIndexer, RunSummary
from eventstore import EventStore, StoreBusyError
from eventstore._format import DB_PRUNED
from eventstore._index import database_name
from tests.e2e.test_cli_runs import as_json, cli
from tests.strategies import step, workflow

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
NOOP = "tests.actors.runtime_flows:noop"


def write_log_without_index(data: Path, runs: int) -> list[str]:
    """A log as code before the run index and pruning wrote it: events only, through the
    store, and then without the `pruned` database (which that code did not create)."""
    ids = []
    with EventStore.open(data / EVENTS, Event) as store:
        for i in range(runs):
            run_id = f"run-{i:03d}"
            name = "even" if i % 2 == 0 else "odd"
            events: list[Event] = [
                RunSubmitted(at=T0 + i, run_id=run_id, spec=workflow(step("a"), name=name))
            ]
            if i % 3 == 0:
                events += [RunStarted(at=T0 + i + 0.1), RunSucceeded(at=T0 + i + 0.2)]
            store.append(run_stream(run_id), events, expected_version=0)
            ids.append(run_id)
    env = lmdb.open(str(data / EVENTS), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(DB_PRUNED, txn=txn), delete=True)
        names = {key for key, _ in txn.cursor()}
    env.close()
    assert DB_PRUNED not in names and not any(n.startswith(b"index:") for n in names), names
    return ids


@pytest.fixture
def old_data(tmp_path: Path) -> tuple[Path, list[str]]:
    data = tmp_path / "data"
    data.mkdir()
    return data, write_log_without_index(data, 7)


def test_a_data_directory_written_without_the_index_lists_every_run(
    old_data: tuple[Path, list[str]],
) -> None:
    """Existing users lose nothing: opening builds the index, and every run is listed."""
    data, ids = old_data
    listed = as_json(cli(data, "runs", "--json"))
    assert [r["run_id"] for r in listed] == ids[::-1]
    assert {r["run_id"]: r["status"] for r in listed} == {
        rid: "succeeded" if i % 3 == 0 else "queued" for i, rid in enumerate(ids)
    }
    with Engine(data_dir=data, drive=False) as eng:
        assert eng.store.index_position() == eng.store.last_position()
        assert len(eng.runs()) == 7


def test_wfa_runs_pages_newest_first_with_a_cursor_and_filters(
    old_data: tuple[Path, list[str]],
) -> None:
    data, ids = old_data
    first = as_json(cli(data, "runs", "--json", "--limit", "3"))
    assert [r["run_id"] for r in first] == ids[6:3:-1]
    second = as_json(cli(data, "runs", "--json", "--limit", "3", "--before", first[-1]["run_id"]))
    assert [r["run_id"] for r in second] == ids[3:0:-1]
    page = cli(data, "runs", "--limit", "3")
    assert f"wfa runs --before {ids[4]}" in page.stderr
    odd = as_json(cli(data, "runs", "--json", "--workflow", "odd", "--status", "queued"))
    assert [r["run_id"] for r in odd] == [ids[5], ids[1]]  # run 3 succeeded
    since = as_json(cli(data, "runs", "--json", "--since", "2027-01-15T08:00:04Z"))
    assert [r["run_id"] for r in since] == ids[:3:-1]
    before = as_json(cli(data, "runs", "--json", "--before", "2027-01-15T08:00:02Z"))
    assert [r["run_id"] for r in before] == ids[1::-1]
    bad = cli(data, "runs", "--before", "yesterday-ish")
    assert bad.returncode == 2 and "--before 'yesterday-ish'" in bad.stderr


def test_the_python_api_pages_with_a_cursor(old_data: tuple[Path, list[str]]) -> None:
    data, ids = old_data
    with Engine(data_dir=data, drive=False) as eng:
        page = eng.runs(limit=4)
        assert [r.run_id for r in page] == ids[6:2:-1] and page.next_before == ids[3]
        rest = eng.runs(limit=4, before=page.next_before)
        assert [r.run_id for r in rest] == ids[2::-1] and rest.next_before is None
        assert rest[0].steps["a"].status == "pending"  # each run of a page is folded


def test_a_rebuilt_index_equals_the_live_one(tmp_path: Path) -> None:
    """Runs driven by the engine build the index live; a rebuild from the log alone
    reproduces it byte for byte."""
    data = tmp_path / "data"
    spec = workflow(step("a", call=NOOP), step("b", after=["a"], call=NOOP), name="flow")
    with Engine(data_dir=data) as eng:
        for _ in range(3):
            eng.submit(spec).wait(timeout=60)

    def snapshot() -> tuple[list[tuple[bytes, bytes]], ...]:
        with EventStore.open(data / EVENTS, Event, indexer=RunIndexer()) as store:
            return store.index_range(ROWS, b""), store.index_range(KEYS, b"")

    live = snapshot()
    assert len(live[0]) == 3
    rebuilt = cli(data, "check", "--rebuild-index", "--json")
    assert rebuilt.returncode == 0 and as_json(rebuilt)["sound"] is True
    assert snapshot() == live


def test_check_finds_an_index_row_that_disagrees_with_the_log_and_a_rebuild_mends_it(
    old_data: tuple[Path, list[str]],
) -> None:
    data, ids = old_data
    assert cli(data, "check").returncode == 0  # an index not built yet is no damage
    assert cli(data, "runs").returncode == 0  # a writable open builds it
    env = lmdb.open(str(data / EVENTS), max_dbs=16)
    rows = env.open_db(database_name(ROWS))
    with env.begin(write=True) as txn:
        row = msgspec.msgpack.decode(txn.get(ids[0].encode(), db=rows), type=RunSummary)
        wrong = msgspec.structs.replace(row, status=RunStatus.FAILED)
        txn.put(ids[0].encode(), msgspec.msgpack.encode(wrong), db=rows)
    env.close()
    found = cli(data, "check")
    assert found.returncode == 2, found.stdout
    assert found.stderr.startswith("error: ") and f"run {ids[0]} disagrees" in found.stderr
    mended = cli(data, "check", "--rebuild-index")
    assert mended.returncode == 0, mended.stderr
    assert "run index rebuilt from the log: 7 runs" in mended.stdout


def test_checking_the_index_while_the_log_is_being_compacted_finds_no_damage(
    old_data: tuple[Path, list[str]],
) -> None:
    """Compaction can begin between `wfa check`'s look at the log and at the index: the
    index's open is refused then (compaction holds `lock.mdb` exclusively, as here),
    which says the log is busy, not that the index disagrees with it."""
    data, _ = old_data
    assert cli(data, "runs").returncode == 0  # indexed
    fd = os.open(data / EVENTS / "lock.mdb", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(StoreBusyError, match="being compacted"):
            check_run_index(data)
    finally:
        os.close(fd)
    assert check_run_index(data).sound
