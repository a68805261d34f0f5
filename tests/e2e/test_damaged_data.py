"""A damaged, misplaced or read-only data directory gets one clear `error:` line from
every command, never a signal, a traceback or a hang, and keeps its bytes.

The corpus is made of corrupted copies of a real log written by `wfa run`:
truncated, zeroed and flipped at the pages LMDB reads (the meta pages, each
tree's root, leaf and overflow pages). Each command runs as its own process, so
a SIGBUS or SIGABRT shows as a negative return code.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore import _pages
from tests.e2e.test_cli_runs import as_json, cli
from tests.e2e.test_cli_validate import ROOT

FAN_OUT = """
name: fan
steps:
  - {id: start, run: ["python3", "-c", "pass"]}
  - id: each
    after: [start]
    foreach: "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]"
    call: builtins:repr
  - {id: last, after: [each], call: builtins:repr}
"""
TINY = 'name: tiny\nsteps:\n  - {id: a, run: ["python3", "-c", "pass"]}\n'
HANG_GUARD = 10.0  # seconds; a command that takes longer is taken to hang


class Log:
    """A real small log: its data directory, one finished run, a workflow to submit."""

    def __init__(self, data: Path, run_id: str, workflow: Path) -> None:
        self.data = data
        self.run_id = run_id
        self.workflow = workflow
        self.queued_id = ""
        self.file = data / "events" / "data.mdb"
        self.bytes = self.file.read_bytes()
        meta = _pages.read_meta(self.file)
        self.page_size = meta.page_size
        walked = _pages.walk(self.file)
        self.databases = walked.databases
        self.main_root = meta.main.root
        self.last_page = meta.last_page
        self.newest_meta = 0 if _meta_txnid(self.bytes, 0) > _meta_txnid(self.bytes, 1) else 1
        events = walked.databases[b"events"].root

        def pages_of(tree: bytes, flags: int) -> list[int]:
            name = f"database {tree.decode()!r}"
            return sorted(
                page
                for page, owner in walked.pages.items()
                if owner == name and page != events and self.flags(page) == flags
            )

        self.events_leaves = pages_of(b"events", _pages.P_LEAF)
        self.index_leaves = pages_of(b"streams_index", _pages.P_LEAF)
        self.overflow_starts = pages_of(b"events", _pages.P_OVERFLOW)

    def flags(self, page: int) -> int:
        header = self.bytes[page * self.page_size :][: _pages.HEADER_SIZE]
        pgno, _, flags, _, _ = _pages.PAGE_HEADER.unpack(header)
        return int(flags) if pgno == page else -1


def _meta_txnid(data: bytes, page: int) -> int:
    return int.from_bytes(data[page * 4096 + _pages.TAIL_OFFSET + 8 :][:8], "little")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    root = tmp_path_factory.mktemp("damaged")
    data = root / "data"
    (root / "fan.yaml").write_text(FAN_OUT)
    (root / "tiny.yaml").write_text(TINY)
    run = as_json(cli(data, "run", root / "fan.yaml", "--json"))
    queued = cli(data, "run", root / "tiny.yaml", "--detach").stdout.split()[0]
    made = Log(data, run["run_id"], root / "tiny.yaml")
    made.queued_id = queued
    assert made.databases[b"events"].depth >= 2 and made.databases[b"events"].overflow_pages
    return made


Damage = Callable[[Log], bytes]


def truncated(size: Callable[[Log], int]) -> Damage:
    return lambda log: log.bytes[: size(log)]


def zeroed(page: Callable[[Log], int]) -> Damage:
    def damage(log: Log) -> bytes:
        start = page(log) * log.page_size
        return log.bytes[:start] + bytes(log.page_size) + log.bytes[start + log.page_size :]

    return damage


def flipped(page: Callable[[Log], int], offset: int, mask: int = 0xFF) -> Damage:
    def damage(log: Log) -> bytes:
        data = bytearray(log.bytes)
        data[page(log) * log.page_size + offset] ^= mask
        return bytes(data)

    return damage


def root_of(name: bytes) -> Callable[[Log], int]:
    return lambda log: log.databases[name].root


LAST_PAGE = _pages.TAIL_OFFSET
MAP_SIZE = _pages.META_OFFSET + 16
FLAGS, FIRST_NODE = 10, _pages.HEADER_SIZE

# Damage on the pages every command reads first: every command must refuse it.
EVERYWHERE: dict[str, Damage] = {
    "truncated-100-bytes": truncated(lambda log: 100),
    "truncated-one-page": truncated(lambda log: 4096),
    "truncated-8KiB": truncated(lambda log: 8192),
    "truncated-to-half": truncated(lambda log: len(log.bytes) // 2),
    "truncated-last-page": truncated(lambda log: len(log.bytes) - log.page_size),
    "zeroed-meta-page-0": zeroed(lambda log: 0),
    "zeroed-meta-page-1": zeroed(lambda log: 1),
    "zeroed-main-root": zeroed(lambda log: log.main_root),
    "zeroed-events-root": zeroed(root_of(b"events")),
    "zeroed-streams-root": zeroed(root_of(b"streams")),
    "zeroed-streams-index-root": zeroed(root_of(b"streams_index")),
    "zeroed-meta-db-root": zeroed(root_of(b"meta")),
    "flipped-main-root-flags": flipped(lambda log: log.main_root, FLAGS),
    "flipped-events-root-flags": flipped(root_of(b"events"), FLAGS),
    "flipped-meta-last-page": flipped(lambda log: log.newest_meta, LAST_PAGE, 0x40),
    "flipped-meta-map-size": flipped(lambda log: log.newest_meta, MAP_SIZE + 3, 0x04),
}
# Damage deeper in the log: an error for the commands that read it (at least `check`,
# and `export` where LMDB itself sees the damage), harmless to the rest.
READS_ALL = ("check", "export")
DEEP: dict[str, tuple[Damage, tuple[str, ...]]] = {
    "zeroed-first-events-leaf": (zeroed(lambda log: log.events_leaves[0]), READS_ALL),
    "zeroed-last-events-leaf": (zeroed(lambda log: log.events_leaves[-1]), READS_ALL),
    "zeroed-stream-index-leaf": (zeroed(lambda log: log.index_leaves[0]), ("check",)),
    "zeroed-overflow-header": (zeroed(lambda log: log.overflow_starts[0]), ("check",)),
    "flipped-events-leaf-flags": (flipped(lambda log: log.events_leaves[1], FLAGS), READS_ALL),
    "flipped-events-leaf-node-offset": (
        flipped(lambda log: log.events_leaves[1], FIRST_NODE + 1, 0x0F),
        ("check",),
    ),
    "flipped-events-leaf-page-number": (flipped(lambda log: log.events_leaves[0], 0), ("check",)),
}


def damaged_copy(log: Log, damage: Damage, where: Path) -> Path:
    data = where / "data"
    shutil.copytree(log.data, data)
    (data / "events" / "data.mdb").write_bytes(damage(log))
    return data


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def commands(log: Log) -> dict[str, list[str]]:
    return {
        "check": ["check"],
        "runs": ["runs"],
        "show": ["show", log.run_id],
        "history": ["history", log.run_id],
        "export": ["export"],
        "stats": ["stats"],
        "run": ["run", str(log.workflow)],
    }


def wfa(
    *args: str | Path, timeout: float = HANG_GUARD, **run: Any
) -> subprocess.CompletedProcess[str]:
    """The real `wfa` in its own process (a signal shows as a negative return code)."""
    executable = shutil.which("wfa")
    assert executable, "wfa is not installed"
    env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
    env.update(run.pop("env", {}))
    try:
        return subprocess.run(
            [executable, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd="/",
            **run,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"wfa {' '.join(map(str, args))} did not finish within {timeout} s")


def run_wfa(data: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    return wfa("--data", data, *args)


def assert_one_error_line(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode >= 0, f"{what}: killed by signal {-result.returncode}"
    assert "Traceback" not in result.stderr + result.stdout, f"{what}: {result.stderr}"
    assert result.returncode == 2, f"{what}: exit {result.returncode}: {result.stderr}"
    first = result.stderr.splitlines()[0] if result.stderr else ""
    assert first.startswith("error: "), f"{what}: {result.stderr}"
    assert sum(line.startswith("error:") for line in result.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", sorted(EVERYWHERE))
def test_every_command_refuses_damage_to_what_it_reads_first(
    log: Log, name: str, tmp_path: Path
) -> None:
    """Exit 2, one `error:` line that names the file, within 10 s; no byte changes."""
    data = damaged_copy(log, EVERYWHERE[name], tmp_path)
    before = digest(data / "events" / "data.mdb")
    for command, args in commands(log).items():
        result = run_wfa(data, args)
        assert_one_error_line(result, f"{name}: wfa {command}")
        assert "damaged" in result.stderr and "backup" in result.stderr
        assert digest(data / "events" / "data.mdb") == before, f"{name}: wfa {command} wrote"


@pytest.mark.parametrize("name", sorted(DEEP))
def test_damage_deep_in_the_log_is_an_error_for_what_reads_it_never_a_signal(
    log: Log, name: str, tmp_path: Path
) -> None:
    """What reads the damage exits 2 (`check` always); no command dies by a signal,
    hangs or shows a traceback, and none but `run` has changed a byte: `wfa run`
    appends its submission while the engine recovers the queued run beside it, so
    whether it meets the damage before or after it wrote is a race."""
    damage, refusers = DEEP[name]
    data = damaged_copy(log, damage, tmp_path)
    before = digest(data / "events" / "data.mdb")
    for command, args in commands(log).items():
        result = run_wfa(data, args)
        what = f"{name}: wfa {command}"
        if command in refusers or result.returncode != 0:
            assert_one_error_line(result, what)
        if command != "run":
            wrote = f"{what} wrote (exit {result.returncode}): {result.stderr}"
            assert digest(data / "events" / "data.mdb") == before, wrote


def test_check_on_a_sound_log_counts_what_it_verified(log: Log) -> None:
    before = digest(log.file)
    result = run_wfa(log.data, ["check", "--json"])
    assert result.returncode == 0, result.stderr
    report = as_json(result)
    assert report["sound"] is True and report["problems"] == []
    exported = run_wfa(log.data, ["export"]).stdout.splitlines()
    assert report["events"] == len(exported)
    assert report["streams"] >= 3 and report["pages"] >= 10
    assert "sound" in run_wfa(log.data, ["check"]).stdout
    assert wfa("check", "--data", log.data).returncode == 0  # --data after the command too
    assert digest(log.file) == before


def test_check_lists_each_damaged_record_with_its_position(log: Log, tmp_path: Path) -> None:
    """A garbled record inside a sound page: the page walk passes, the record check names it."""
    leaf = log.events_leaves[len(log.events_leaves) // 2]
    page = log.bytes[leaf * log.page_size : (leaf + 1) * log.page_size]
    upper = int.from_bytes(page[14:16], "little")
    # the record's msgpack starts right after its node header (8 bytes) and 8-byte key
    damage = flipped(lambda log: leaf, upper + 8 + 8 + 1, 0x80)
    data = damaged_copy(log, damage, tmp_path)
    result = run_wfa(data, ["check", "--json"])
    assert result.returncode == 2, result.stderr
    report = as_json(result)
    assert report["sound"] is False and report["problems"]
    assert any(isinstance(p["position"], int) for p in report["problems"])
    text = run_wfa(data, ["check"])
    assert_one_error_line(text, "wfa check")
    assert "position " in text.stderr


# --- the data directory's path ------------------------------------------------


def test_data_paths_that_cannot_be_a_directory_are_one_error_each(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("not a directory")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    for data in (a_file, a_file / "under", dangling, dangling / "under"):
        for args in (["runs"], ["run", str(ROOT / "examples" / "quality-gate.yaml"), "--detach"]):
            result = run_wfa(data, args)
            assert_one_error_line(result, f"--data {data} {args[0]}")
            assert str(data.parent if data.parent != tmp_path else data) in result.stderr
            assert "Usage" not in result.stderr
    assert a_file.read_text() == "not a directory" and not (tmp_path / "nowhere").exists()


# --- a read-only data directory, as a user who is not its owner ----------------


@functools.cache
def nobody_wfa() -> tuple[str, ...]:
    """A `wfa` command line that the user nobody can run: this interpreter, or the
    system's one of the same version, importing this checkout and its dependencies."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run wfa as the user nobody")
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{sysconfig.get_paths()['purelib']}"}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (sys.executable, f"/usr/bin/python{version}"):
        try:
            probe = subprocess.run(
                [python, "-c", "import engine.cli"], env=env, user="nobody", capture_output=True
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return (python, "-c", "from engine.cli.app import main; main()")
    pytest.skip("no Python that the user nobody may run can import this project")


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory under /tmp that the user nobody can enter (pytest's tmp is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="wfa-readonly-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o700)
    shutil.rmtree(path)


def wfa_as_nobody(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`wfa --data DATA ARGS...` as the user nobody, in its own process."""
    command = nobody_wfa()
    env = {
        "HOME": "/tmp",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{sysconfig.get_paths()['purelib']}",
    }
    try:
        return subprocess.run(
            [*command, "--data", str(data), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd="/",
            user="nobody",
            group="nogroup",
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"wfa {' '.join(args)} as nobody did not finish within 60 s")


def test_read_commands_work_on_a_read_only_directory_and_writes_are_refused(
    log: Log, shared_tmp: Path
) -> None:
    data = shared_tmp / "data"
    shutil.copytree(log.data, data)
    for path in [data, *data.rglob("*")]:
        os.chown(path, 65534, 65534, follow_symlinks=False)
        path.chmod(0o500 if path.is_dir() else 0o400)
    (shared_tmp / "tiny.yaml").write_text(TINY)
    before = {p: digest(p) for p in data.rglob("*") if p.is_file()}
    runs = wfa_as_nobody(data, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    assert log.run_id in {r["run_id"] for r in as_json(runs)}
    for args in (["show", log.run_id], ["history", log.run_id], ["export"], ["stats"], ["check"]):
        result = wfa_as_nobody(data, *args)
        assert result.returncode == 0, f"{args}: {result.stderr}"
    for args in (["run", str(shared_tmp / "tiny.yaml")], ["cancel", log.queued_id]):
        result = wfa_as_nobody(data, *args)
        assert_one_error_line(result, f"wfa {args[0]}")
        assert "not writable" in result.stderr and str(data) in result.stderr
    assert {p: digest(p) for p in data.rglob("*") if p.is_file()} == before
    assert stat.S_IMODE(data.stat().st_mode) == 0o500


def test_an_unwritable_data_path_is_one_error(shared_tmp: Path) -> None:
    shared_tmp.chmod(0o755)  # owned by root: nobody may not create in it
    data = shared_tmp / "data"
    result = wfa_as_nobody(data, "run", str(ROOT / "examples" / "quality-gate.yaml"), "--detach")
    assert_one_error_line(result, "wfa run")
    assert str(data) in result.stderr and not data.exists()
