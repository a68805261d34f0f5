"""One LMDB environment per store per process, and the map-size dance around it.

LMDB forbids opening the same environment twice in one process (closing either
copy drops the other's advisory locks), so handles on the same directory share
one ``SharedEnv``, counted by reference. Growing the map remaps it, which must
not happen under a live transaction in any thread: every transaction runs under
``MapGuard.shared()`` and a resize takes ``MapGuard.exclusive()``.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb

from . import _format as fmt
from . import _pages
from ._errors import (
    CorruptStoreError,
    EventStoreError,
    StoreBusyError,
    StoreClosedError,
    StoreFormatError,
    StoreReadOnlyError,
)
from ._index import Indexer, InstalledIndexer, check_installable
from ._writer import Writer

T = TypeVar("T")

INITIAL_MAP_SIZE = 64 << 20
DAMAGE_ERRORS = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.VersionMismatchError,
    lmdb.PanicError,
    lmdb.BadTxnError,
)
"""LMDB errors that mean the file is damaged, not that the caller did something wrong."""


class MapGuard:
    """A readers-writer lock: transactions share it, a map resize holds it alone.

    A waiting resize blocks new transactions so that it cannot starve.
    """

    def __init__(self) -> None:
        self._cv = threading.Condition(threading.Lock())
        self._active = 0
        self._resizing = False
        self._waiting_resizers = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cv:
            while self._resizing or self._waiting_resizers:
                self._cv.wait()
            self._active += 1
        try:
            yield
        finally:
            with self._cv:
                self._active -= 1
                if not self._active:
                    self._cv.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cv:
            self._waiting_resizers += 1
            while self._resizing or self._active:
                self._cv.wait()
            self._waiting_resizers -= 1
            self._resizing = True
        try:
            yield
        finally:
            with self._cv:
                self._resizing = False
                self._cv.notify_all()


class SharedEnv:
    """An open LMDB environment with its database handles and resize logic."""

    def __init__(
        self, path: pathlib.Path, env: lmdb.Environment, durability: str, readonly: bool
    ) -> None:
        self.path = path
        self.env = env
        self.durability = durability
        self.readonly = readonly
        self.guard = MapGuard()
        self.refs = 0
        self.key = path.resolve()
        self.closed = False
        self.damage: CorruptStoreError | None = None
        """Set at the first sign of damage; from then on every use raises it."""
        if readonly:  # py-lmdb keeps handles opened in its own read txn, not in ours
            self.meta = env.open_db(fmt.DB_META, create=False)
            self.events = env.open_db(fmt.DB_EVENTS, create=False)
            self.streams_index = env.open_db(fmt.DB_STREAMS_INDEX, create=False)
            self.streams = env.open_db(fmt.DB_STREAMS, create=False)
            try:
                self.pruned = env.open_db(fmt.DB_PRUNED, create=False)
            except lmdb.NotFoundError:  # a log last written by a version before pruning
                env.close()
                raise StoreReadOnlyError(
                    f"{path}: this log was written by an older version and, read-only, cannot "
                    "be brought up to date: run any command once as the directory's owner"
                ) from None
        else:
            with env.begin(write=True) as txn:
                self.meta = env.open_db(fmt.DB_META, txn=txn)
                self.events = env.open_db(fmt.DB_EVENTS, txn=txn)
                self.streams_index = env.open_db(fmt.DB_STREAMS_INDEX, txn=txn)
                self.streams = env.open_db(fmt.DB_STREAMS, txn=txn)
                self.pruned = env.open_db(fmt.DB_PRUNED, txn=txn)
                if txn.get(fmt.KEY_FORMAT, db=self.meta) is None:
                    txn.put(fmt.KEY_FORMAT, fmt.FORMAT_MARKER, db=self.meta)
                    txn.put(fmt.KEY_VERSION, fmt.pack_version(fmt.FORMAT_VERSION), db=self.meta)
        self.indexer: InstalledIndexer[Any] | None = None
        """Runs inside every append's write transaction, whichever handle appends."""
        self.open_guard: int | None = None
        """The descriptor holding `hold_open`'s lock; closed after the environment."""
        self.writer = Writer(self)

    def install(self, indexer: Indexer[Any], event_type: Any) -> None:
        """Index every append made in this process from now on, then catch up on what
        the log holds beyond the index (written before, or by a process without it)."""
        with _registry_lock:
            check_installable(self.indexer, indexer)
            if self.indexer is None:
                with self.guard.shared():
                    self.indexer = InstalledIndexer(
                        self.env, self.meta, indexer, event_type, self.readonly
                    )
        if not self.readonly:  # read-only: the index answers as of its last writer
            self.writer.catch_up_index()

    def damaged(self, exc: lmdb.Error | struct.error) -> EventStoreError:
        """The store's error for an LMDB error, or for a key or value cut short (damage
        LMDB did not see); damage is remembered for good."""
        if not isinstance(exc, (*DAMAGE_ERRORS, struct.error)):
            return EventStoreError(f"{self.path / 'data.mdb'}: {exc}")
        if self.damage is None:
            self.damage = damage_error(self.path, str(exc))
        return self.damage

    def read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(txn)`` in a short read transaction; adopt a map grown elsewhere.

        Runs in the calling thread; never blocks on writers (LMDB MVCC), only on
        a map resize in this process.
        """
        while True:
            with self.guard.shared():
                if self.closed:
                    raise StoreClosedError(f"event store {str(self.path)!r} is closed")
                if self.damage is not None:
                    raise self.damage
                try:
                    txn = self.env.begin(buffers=False)
                except lmdb.MapResizedError:
                    pass
                except lmdb.Error as exc:
                    raise self.damaged(exc) from exc
                else:
                    try:
                        return fn(txn)
                    except (lmdb.Error, struct.error) as exc:
                        raise self.damaged(exc) from exc
                    finally:
                        txn.abort()
            self.adopt_map_size()

    def adopt_map_size(self) -> None:
        """Another process grew the map past ours: take the size it recorded."""
        with self.guard.exclusive():
            self.env.set_mapsize(0)

    def grow_map(self) -> None:
        """Double the map after a MapFullError (runs in the writer thread)."""
        with self.guard.exclusive():
            self.env.set_mapsize(self.env.info()["map_size"] * 2)


_registry_lock = threading.Lock()
_registry: dict[pathlib.Path, SharedEnv] = {}


def damage_error(path: pathlib.Path, reason: str) -> CorruptStoreError:
    return CorruptStoreError(str(path / "data.mdb"), reason)


def acquire(path: pathlib.Path, durability: str, create: bool, readonly: bool) -> SharedEnv:
    """Open (or share) the environment at ``path``, validating it first.

    Refuses, touching nothing, a path that is not a directory, a directory with
    files other than LMDB's, an LMDB without our marker, a newer format, or a
    damaged file (CorruptStoreError, found before LMDB maps it).
    """
    with _registry_lock:
        key = path.resolve() if path.exists() else path.absolute()
        shared = _registry.get(key)
        if shared is None:
            shared = _open(path, durability, create, readonly)
            _registry[shared.key] = shared
        elif shared.durability != durability or shared.readonly != readonly:
            raise StoreFormatError(
                f"store {str(path)!r} is already open in this process with "
                f"durability={shared.durability!r}, readonly={shared.readonly}"
            )
        shared.refs += 1
        return shared


def open_here(path: pathlib.Path) -> bool:
    """True if this process has the store at ``path`` open."""
    with _registry_lock:
        return path.resolve() in _registry


def release(shared: SharedEnv) -> bool:
    """Drop one reference; close the environment and return True on the last."""
    with _registry_lock:
        shared.refs -= 1
        if shared.refs:
            return False
        _registry.pop(shared.key, None)
        shared.writer.close()
        with shared.guard.exclusive():
            shared.closed = True
            shared.env.close()
            if shared.open_guard is not None:
                os.close(shared.open_guard)
    return True


def _open(path: pathlib.Path, durability: str, create: bool, readonly: bool) -> SharedEnv:
    if path.exists() and not path.is_dir():
        raise StoreFormatError(f"{str(path)!r} is a file, not an event store directory")
    if not path.exists():
        if not create or readonly:
            raise StoreFormatError(f"no event store at {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass  # another process created it first; its mode is its business
        else:
            os.chmod(path, 0o700)  # the umask may have taken more than it should
    entries = {entry.name for entry in path.iterdir()}
    foreign = sorted(entries - fmt.LMDB_FILES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise StoreFormatError(
            f"{str(path)!r} holds other files ({shown}); it is not an event store. "
            "Choose an empty or new directory."
        )
    fresh = "data.mdb" not in entries or (path / "data.mdb").stat().st_size == 0
    # Validated under the lock, so that a compaction cannot swap the file meanwhile;
    # a lock file is created only once the directory is known to be ours.
    guard = hold_open(path, readonly, create=False)
    try:
        if not fresh:
            check_untouched(path)
        elif not create or readonly:
            raise StoreFormatError(f"no event store at {str(path)!r}")
        if guard is None and not readonly:
            guard = hold_open(path, readonly, create=True)
        shared = _open_env(path, durability, readonly, fresh)
    except BaseException:
        if guard is not None:
            os.close(guard)
        raise
    shared.open_guard = guard
    return shared


def hold_open(path: pathlib.Path, readonly: bool, create: bool) -> int | None:
    """Take a shared ``flock`` on ``lock.mdb``, held while the environment is open;
    StoreBusyError while the store is being compacted (``compact_store`` holds it
    exclusively: a handle open on the file it replaces would write into the old one).

    ``flock`` is apart from the ``fcntl`` locks LMDB keeps on the same file, but
    closing any descriptor of the file drops those: the descriptor returned must
    stay open until after the environment is closed. None if there is no lock file
    (and not ``create``), or it cannot even be read (a reader without rights; LMDB
    reports that its own way).
    """
    lock = path / "lock.mdb"
    flags = os.O_RDONLY if readonly else os.O_RDWR | (os.O_CREAT if create else 0)
    try:
        fd = os.open(lock, flags, 0o600)
    except OSError:
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreBusyError(
            f"{str(path)!r} is being compacted by another process; open it again when that ends"
        ) from None
    return fd


def _open_env(path: pathlib.Path, durability: str, readonly: bool, fresh: bool) -> SharedEnv:
    try:
        env = _lmdb_open(path, durability, readonly)
    except lmdb.Error as exc:
        raise EventStoreError(f"cannot open {str(path)!r}: {exc}") from exc
    try:
        if not fresh:
            _check_env(env, path)
        shared = SharedEnv(path, env, durability, readonly)
    except DAMAGE_ERRORS as exc:
        env.close()
        raise damage_error(path, str(exc)) from exc
    except BaseException:
        env.close()
        raise
    if fresh:
        for name in fmt.LMDB_FILES:
            os.chmod(path / name, 0o600)
    return shared


def open_lmdb(path: pathlib.Path) -> lmdb.Environment:
    """The environment at ``path`` opened for writing, as a store opens it (sync)."""
    return _lmdb_open(path, "sync", readonly=False)


def _lmdb_open(path: pathlib.Path, durability: str, readonly: bool) -> lmdb.Environment:
    if readonly:  # without a writable lock file, readers go unregistered: nobody can write
        lock = os.access(path / "lock.mdb", os.W_OK)
        return lmdb.open(str(path), readonly=True, lock=lock, max_dbs=16, subdir=True, create=False)
    sync = durability == "sync"
    old_umask = os.umask(0o077)
    try:
        return lmdb.open(
            str(path),
            map_size=INITIAL_MAP_SIZE,
            max_dbs=16,
            max_readers=512,
            mode=0o600,
            subdir=True,
            create=True,
            sync=sync,
            metasync=sync,
            writemap=False,  # pwrite() into the page cache: a process crash loses nothing
        )
    finally:
        os.umask(old_umask)


def check_untouched(path: pathlib.Path) -> None:
    """Validate marker and version without writing a byte, not even to ``lock.mdb``.

    A lockless reader is not registered in LMDB's reader table, so under heavy
    concurrent writes it could read a recycled page; the marker never changes,
    so a failure is retried before it is believed. Before LMDB maps the file,
    its meta and root pages are read with ``pread`` (``_pages.precheck``): a
    truncated file would be a SIGBUS through the map, a bad root an abort.
    """
    try:
        _pages.precheck(path / "data.mdb")
    except _pages.NotLmdbError:
        raise StoreFormatError(f"{str(path)!r} is not an event store: not an LMDB file") from None
    except _pages.PageError as exc:
        raise damage_error(path, str(exc)) from None
    for attempt in range(_CHECK_ATTEMPTS):
        try:
            env = lmdb.open(
                str(path), readonly=True, lock=False, max_dbs=16, subdir=True, create=False
            )
            try:
                _check_env(env, path)
            finally:
                env.close()
            return
        except (lmdb.Error, StoreFormatError) as exc:
            if isinstance(exc, _NewerFormatError) or attempt == _CHECK_ATTEMPTS - 1:
                if isinstance(exc, StoreFormatError):
                    raise
                if isinstance(exc, DAMAGE_ERRORS):
                    raise damage_error(path, str(exc)) from exc
                raise StoreFormatError(f"{str(path)!r} is not an event store: {exc}") from exc
            time.sleep(0.01)


_CHECK_ATTEMPTS = 3


class _NewerFormatError(StoreFormatError):
    pass


def _check_env(env: lmdb.Environment, path: pathlib.Path) -> None:
    """Accept an empty LMDB (a creation cut short) or one with our marker and version."""
    with env.begin() as txn:
        if not txn.cursor().first():
            return
        if txn.get(fmt.DB_META) is None:
            raise StoreFormatError(f"{str(path)!r} is an LMDB database but not an event store")
        try:
            meta = env.open_db(fmt.DB_META, txn=txn, create=False)
            marker = txn.get(fmt.KEY_FORMAT, db=meta)
            raw_version = txn.get(fmt.KEY_VERSION, db=meta)
        except DAMAGE_ERRORS:
            raise
        except lmdb.Error as exc:
            raise StoreFormatError(f"{str(path)!r} is not an event store: {exc}") from exc
    if marker != fmt.FORMAT_MARKER or raw_version is None or len(raw_version) != 4:
        raise StoreFormatError(f"{str(path)!r} is an LMDB database but not an event store")
    version = fmt.unpack_version(raw_version)
    if version > fmt.FORMAT_VERSION:
        raise _NewerFormatError(
            f"{str(path)!r} uses event store format {version}; this code reads up to "
            f"{fmt.FORMAT_VERSION}. Upgrade workflow-automator to open it."
        )
