"""Compaction: shrink ``data.mdb`` to what the log holds, by copy and rename.

LMDB reuses freed pages but never shrinks its file. ``compact_store`` writes a
compacted copy (free pages left out), fsyncs it and renames it over
``data.mdb``: a kill at any moment leaves the old file or the new one. A handle
open on the old file while it is replaced would keep writing into the unlinked
inode and lose those writes, so compaction runs only while no handle, in any
process, has the store open, and keeps new ones out until it is done: every
open holds a shared ``flock`` on ``lock.mdb`` (``_env.hold_open``) and
compaction takes it exclusively, without waiting, or refuses.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil

from . import _env
from ._errors import StoreBusyError, StoreFormatError


def compact_store(path: str | os.PathLike[str], scratch: str | os.PathLike[str]) -> tuple[int, int]:
    """Compact the store in directory ``path``; (bytes of data.mdb before, after).

    ``scratch``: a directory to create (emptied first) on the same file system,
    for the copy; removed when done. StoreBusyError, touching nothing, while any
    handle has the store open; openers meanwhile get StoreBusyError.
    """
    path, scratch = pathlib.Path(path), pathlib.Path(scratch)
    data = path / "data.mdb"
    if not data.is_file() or not (path / "lock.mdb").is_file():
        raise StoreFormatError(f"no event store at {str(path)!r}")
    if _env.open_here(path):  # and our descriptor's close would drop this process's locks
        raise StoreBusyError(f"{str(path)!r} is open in this process; close it before compacting")
    fd = os.open(path / "lock.mdb", os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreBusyError(
                f"{str(path)!r} is open in another process; close it before compacting"
            ) from None
        _env.check_untouched(path)  # a foreign, newer or damaged file: refused before mapping
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        before = data.stat().st_size
        env = _env.open_lmdb(path)
        try:
            env.copy(str(scratch), compact=True)
        except _env.DAMAGE_ERRORS as exc:
            raise _env.damage_error(path, str(exc)) from exc
        finally:
            env.close()  # before our descriptor: closing it would drop LMDB's fcntl locks
        copy = scratch / "data.mdb"
        _fsync(copy)
        os.replace(copy, data)
        _fsync(path)
        shutil.rmtree(scratch, ignore_errors=True)
        return before, data.stat().st_size
    finally:
        os.close(fd)


def _fsync(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
