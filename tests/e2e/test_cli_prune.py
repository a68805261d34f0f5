"""`wfa prune` given an archive that is not one: one error, and not a run removed;
`wfa compact` and commands that race with it: refused in one line, never lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.input.datadir import EVENTS
from engine.rules.events import Event
from eventstore import EventStore
from tests.e2e.test_cli_run_index import write_log_without_index
from tests.e2e.test_cli_runs import as_json, cli
from tests.e2e.test_prune_crash import Lines, child


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _not_gzip(path: Path) -> None:
    path.write_text("not an archive\n")


@pytest.mark.parametrize("make", [_fifo, _not_gzip])
def test_an_archive_that_is_not_one_is_refused_before_any_run_is_removed(
    tmp_path: Path, make: object
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ids = write_log_without_index(data, 4)  # runs 0 and 3 have ended
    archive = tmp_path / "archive.jsonl.gz"
    make(archive)  # type: ignore[operator]
    refused = cli(data, "prune", "--ended-before", "0s", "--archive", archive)  # bounded: no hang
    assert refused.returncode == 2, refused.stdout
    assert refused.stderr.startswith(f"error: archive {archive} is not a")
    assert len(refused.stderr.splitlines()) == 1
    assert sorted(r["run_id"] for r in as_json(cli(data, "runs", "--json"))) == ids


@pytest.mark.parametrize("where", ["a directory", "a path through a file"])
def test_an_archive_path_that_cannot_be_one_is_one_error_line(tmp_path: Path, where: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    ids = write_log_without_index(data, 4)  # runs 0 and 3 ended by 2027-01-15T08:00:04Z
    (tmp_path / "file").touch()
    archive = tmp_path if where == "a directory" else tmp_path / "file" / "archive.jsonl.gz"
    refused = cli(data, "prune", "--ended-before", "2027-02-01T00:00:00Z", "--archive", archive)
    assert refused.returncode == 2, refused.stdout
    expected = (
        f"error: --archive {archive} is a directory; name a file"
        if where == "a directory"
        else f"error: archive {archive}: Not a directory; name another file"
    )
    assert refused.stderr.startswith(expected) and len(refused.stderr.splitlines()) == 1
    assert sorted(r["run_id"] for r in as_json(cli(data, "runs", "--json"))) == ids
    pruned = cli(
        data, "prune", "--ended-before", "2027-02-01T00:00:00Z", "--archive", tmp_path / "a.gz"
    )
    assert pruned.returncode == 0 and pruned.stdout.startswith("pruned 2 runs into "), pruned.stderr


def test_a_command_started_while_the_log_is_compacted_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """A child compacts again and again; `wfa runs` meanwhile either lists every run or
    says the log is being compacted (one line, exit 2), and `wfa compact` refuses while
    another process has the log open."""
    data = tmp_path / "data"
    data.mkdir()
    ids = write_log_without_index(data, 4)
    assert cli(data, "runs").returncode == 0  # indexed, as a current directory is
    compacting = child(data, "compact")
    try:
        assert Lines(compacting).next() == "ready"
        outcomes = set()
        for _ in range(200):
            listed = cli(data, "runs", "--json")
            if listed.returncode == 0:
                assert sorted(r["run_id"] for r in as_json(listed)) == ids
                outcomes.add("listed")
            else:
                assert listed.returncode == 2 and len(listed.stderr.splitlines()) == 1
                assert "is being compacted by another process" in listed.stderr
                outcomes.add("refused")
            if outcomes == {"listed", "refused"}:
                break
        assert outcomes == {"listed", "refused"}
    finally:
        compacting.kill()
        compacting.wait(60)
    with EventStore.open(data / EVENTS, Event, create=False):
        refused = cli(data, "compact")
    assert refused.returncode == 2
    assert (
        refused.stderr
        == f"error: another process has {data / EVENTS} open; close it before compacting\n"
    )
    assert cli(data, "compact").returncode == 0
