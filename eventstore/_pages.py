"""LMDB's file read with ``struct``, so damage is found before LMDB maps the file.

LMDB trusts its file: a page past the end of a truncated file is a SIGBUS when
touched through the map, and a zeroed or garbled page can trip an assertion
(SIGABRT) or send a cursor round in circles. Neither can be caught in Python.
So the store reads the two meta pages itself before every open (cheap:
two ``pread``), and ``wfa check`` walks every reachable page (``walk``).

The layout is LMDB 0.9's, documented in ``mdb.c`` (``MDB_page``, ``MDB_meta``,
``MDB_db``, ``MDB_node``), in the machine's byte order (little-endian, 64-bit):

* page header, 16 bytes: ``pgno u64, pad u16, flags u16, lower u16, upper u16``
  (an overflow page has ``pages u32`` in place of lower/upper);
* meta page (pages 0 and 1): the header, then ``magic u32, version u32,
  address u64, mapsize u64, dbs[2] (free, main), last_pg u64, txnid u64``;
* ``MDB_db``, 48 bytes: ``pad u32 (the page size, in the free db), flags u16,
  depth u16, branch_pages, leaf_pages, overflow_pages, entries, root`` (u64s);
* a node: ``lo u16, hi u16, flags u16, ksize u16``, key, data. In a branch,
  lo/hi/flags hold the child's page number; in a leaf, lo/hi the data size.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
P_INVALID = (1 << 64) - 1
P_BRANCH, P_LEAF, P_OVERFLOW, P_META = 0x01, 0x02, 0x04, 0x08
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
PAGE_HEADER = struct.Struct("<QHHHH")
OVERFLOW_HEADER = struct.Struct("<QHHI")
META = struct.Struct("<IIQQ")
DB = struct.Struct("<IHHQQQQQ")
META_TAIL = struct.Struct("<QQ")
NODE = struct.Struct("<HHHH")
HEADER_SIZE = PAGE_HEADER.size
META_OFFSET = HEADER_SIZE
DBS_OFFSET = META_OFFSET + META.size
TAIL_OFFSET = DBS_OFFSET + 2 * DB.size


class PageError(Exception):
    """What is wrong with the file, in words a user can act on (no location prefix)."""


class NotLmdbError(PageError):
    """Neither meta page carries LMDB's magic: a foreign file, not a damaged one."""


@dataclass(frozen=True)
class Tree:
    """One ``MDB_db``: a B-tree's root and the counts LMDB keeps for it."""

    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int


@dataclass(frozen=True)
class Meta:
    """The meta page LMDB will use: the one with the higher transaction id."""

    page_size: int
    map_size: int
    last_page: int
    txnid: int
    free: Tree
    main: Tree


def _tree(page: bytes, offset: int) -> tuple[int, Tree]:
    pad, _flags, depth, branch, leaf, overflow, entries, root = DB.unpack_from(page, offset)
    return pad, Tree(depth, branch, leaf, overflow, entries, root)


def _parse_meta(page: bytes, which: int) -> Meta:
    if len(page) < TAIL_OFFSET + META_TAIL.size:
        raise PageError(f"it ends inside meta page {which}")
    _pgno, _pad, flags, _lower, _upper = PAGE_HEADER.unpack_from(page)
    magic, version, _address, map_size = META.unpack_from(page, META_OFFSET)
    if not flags & P_META or magic != MAGIC:
        raise NotLmdbError(f"meta page {which} is not an LMDB meta page")
    if version != DATA_VERSION:
        raise PageError(f"meta page {which} has LMDB format {version}, not {DATA_VERSION}")
    page_size, free = _tree(page, DBS_OFFSET)
    _, main = _tree(page, DBS_OFFSET + DB.size)
    last_page, txnid = META_TAIL.unpack_from(page, TAIL_OFFSET)
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise PageError(f"meta page {which} records an impossible page size {page_size}")
    return Meta(page_size, map_size, last_page, txnid, free, main)


def read_meta(data_file: str | os.PathLike[str]) -> Meta:
    """The meta page LMDB would use, checked against the file's size; raise PageError.

    Only reads (two ``pread``); safe on any file. Checks that both meta pages
    are LMDB's, that the file holds every page the newest one counts, and that
    its tree roots and map size fit in that.
    """
    with open(data_file, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        try:
            meta0 = _parse_meta(os.pread(file.fileno(), 4096, 0), 0)
        except NotLmdbError:
            try:  # LMDB's own default page size is the OS page size
                _parse_meta(os.pread(file.fileno(), 4096, os.sysconf("SC_PAGE_SIZE")), 1)
            except PageError:
                raise NotLmdbError("it is not an LMDB file") from None
            raise PageError("meta page 0 is overwritten") from None
        try:
            meta1 = _parse_meta(os.pread(file.fileno(), 4096, meta0.page_size), 1)
        except NotLmdbError as exc:  # meta page 0 is LMDB's: this is damage, not foreign
            raise PageError(str(exc)) from None
    meta = meta0 if meta0.txnid > meta1.txnid else meta1
    needed = (meta.last_page + 1) * meta.page_size
    if size < needed:
        raise PageError(f"it is truncated: {size} bytes, but its last page ends at byte {needed}")
    if meta.map_size < needed:
        raise PageError(f"its map size {meta.map_size} is smaller than its {needed} bytes of pages")
    for name, tree in (("free-page", meta.free), ("main", meta.main)):
        if tree.root != P_INVALID and not 2 <= tree.root <= meta.last_page:
            raise PageError(f"the {name} tree's root page {tree.root} is outside the file")
    return meta


def precheck(data_file: str | os.PathLike[str]) -> Meta:
    """``read_meta``, then the root page of the main tree and of each database in it.

    A handful of ``pread`` calls, so every open can afford it: a damaged root
    is what LMDB touches first, and what an append rewrites. Raises PageError.
    """
    meta = read_meta(data_file)
    report = WalkReport()
    with open(data_file, "rb") as file:
        walker = _Walker(file.fileno(), meta, report)
        roots = [("main tree", meta.main)]
        if meta.main.depth == 1:
            roots += walker.databases(meta.main.root)
        for name, tree in roots:
            if tree.root != P_INVALID:
                problem = walker.check_header(walker.page(tree.root), tree.root, 1, tree.depth)
                if problem:
                    report.problems.append(f"{name}: root page {tree.root} {problem}")
    if report.problems:
        raise PageError(report.problems[0])
    return meta


@dataclass
class WalkReport:
    """What ``walk`` found: every page reachable from the newest meta page."""

    pages: dict[int, str] = field(default_factory=dict)
    """Each reachable page (branch, leaf, overflow; not the metas) and its tree's name."""
    databases: dict[bytes, Tree] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def walk(data_file: str | os.PathLike[str]) -> WalkReport:
    """Check every page reachable from the newest meta page without LMDB.

    Reads the file with ``pread`` (never a map, so a short file is an error,
    not a signal). Checks each page's number, type, bounds and node offsets,
    each tree's depth and counts, and that no page is reachable twice. The
    free-page tree and the main tree are walked, and each named database the
    main tree lists. Problems are collected, not raised; PageError only when
    the meta pages themselves are unusable.
    """
    meta = read_meta(data_file)
    report = WalkReport()
    with open(data_file, "rb") as file:
        walker = _Walker(file.fileno(), meta, report)
        walker.tree("free-page tree", meta.free)
        for name, data in walker.tree("main tree", meta.main):
            if len(data) != DB.size:
                report.problems.append(f"database {name!r}: its record is {len(data)} bytes")
                continue
            _, tree = _tree(data, 0)
            report.databases[name] = tree
            walker.tree(f"database {name.decode('utf-8', 'replace')!r}", tree)
    return report


class _Walker:
    def __init__(self, fd: int, meta: Meta, report: WalkReport) -> None:
        self.fd = fd
        self.meta = meta
        self.report = report
        self.psize = meta.page_size

    def databases(self, pgno: int) -> list[tuple[str, Tree]]:
        """The databases a one-page main tree lists (its root at ``pgno``)."""
        counts = {"branch": 0, "leaf": 0, "overflow": 0, "entries": 0}
        found = []
        for name, data in self._node_page("main tree", pgno, 1, 1, counts):
            if len(data) == DB.size:
                found.append((f"database {name.decode('utf-8', 'replace')!r}", _tree(data, 0)[1]))
        self.report.pages.clear()
        return found

    def page(self, pgno: int, count: int = 1) -> bytes:
        return os.pread(self.fd, self.psize * count, pgno * self.psize)

    def tree(self, name: str, tree: Tree) -> list[tuple[bytes, bytes]]:
        """Walk ``tree``; return (key, data) of its leaf nodes that hold databases."""
        if tree.root == P_INVALID:
            if tree.entries or tree.depth:
                self.report.problems.append(f"{name}: empty but counts {tree.entries} entries")
            return []
        counts = {"branch": 0, "leaf": 0, "overflow": 0, "entries": 0}
        databases = list(self._node_page(name, tree.root, 1, tree.depth, counts))
        expected = {
            "branch": tree.branch_pages,
            "leaf": tree.leaf_pages,
            "overflow": tree.overflow_pages,
            "entries": tree.entries,
        }
        for what, count in counts.items():
            if count != expected[what]:
                self.report.problems.append(
                    f"{name}: {count} {what} {'' if what == 'entries' else 'pages '}found, "
                    f"{expected[what]} recorded"
                )
        return databases

    def _claim(self, name: str, pgno: int) -> bool:
        if not 2 <= pgno <= self.meta.last_page:
            self.report.problems.append(f"{name}: page number {pgno} is outside the file")
            return False
        if pgno in self.report.pages:
            self.report.problems.append(f"{name}: page {pgno} is reachable twice")
            return False
        self.report.pages[pgno] = name
        return True

    def _node_page(
        self, name: str, pgno: int, level: int, depth: int, counts: dict[str, int]
    ) -> Iterator[tuple[bytes, bytes]]:
        if not self._claim(name, pgno):
            return
        page = self.page(pgno)
        problem = self.check_header(page, pgno, level, depth)
        if problem:
            self.report.problems.append(f"{name}: page {pgno} {problem}")
            return
        _, _, flags, lower, _upper = PAGE_HEADER.unpack_from(page)
        nodes = (lower - HEADER_SIZE) // 2
        branch = bool(flags & P_BRANCH)
        counts["branch" if branch else "leaf"] += 1
        for index in range(nodes):
            (offset,) = struct.unpack_from("<H", page, HEADER_SIZE + 2 * index)
            if offset < lower or offset + NODE.size > self.psize:
                self.report.problems.append(f"{name}: page {pgno} node {index} is out of bounds")
                return
            lo, hi, node_flags, ksize = NODE.unpack_from(page, offset)
            key_end = offset + NODE.size + ksize
            if key_end > self.psize:
                self.report.problems.append(f"{name}: page {pgno} node {index} key overruns it")
                return
            key = page[offset + NODE.size : key_end]
            if branch:
                child = lo | hi << 16 | node_flags << 32
                yield from self._node_page(name, child, level + 1, depth, counts)
                continue
            counts["entries"] += 1
            size = lo | hi << 16
            if node_flags & F_DUPDATA:
                self.report.problems.append(f"{name}: page {pgno} holds a duplicate-key node")
            elif node_flags & F_BIGDATA:
                if key_end + 8 > self.psize:
                    self.report.problems.append(f"{name}: page {pgno} node {index} overruns it")
                    return
                (first,) = struct.unpack_from("<Q", page, key_end)
                counts["overflow"] += self._overflow(name, first, size)
            elif key_end + size > self.psize:
                self.report.problems.append(f"{name}: page {pgno} node {index} value overruns it")
                return
            elif node_flags & F_SUBDATA:
                yield key, page[key_end : key_end + size]

    def check_header(self, page: bytes, pgno: int, level: int, depth: int) -> str | None:
        if len(page) < self.psize:
            return "is cut off by the end of the file"
        stored, _pad, flags, lower, upper = PAGE_HEADER.unpack_from(page)
        if stored != pgno:
            return f"says it is page {stored}"
        kind = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META)
        wanted = P_LEAF if level == depth else P_BRANCH
        if kind != wanted:
            return f"is not the {'leaf' if wanted == P_LEAF else 'branch'} page its tree needs"
        if not HEADER_SIZE <= lower <= upper <= self.psize or (lower - HEADER_SIZE) % 2:
            return f"has impossible bounds (lower {lower}, upper {upper})"
        if level > depth or (flags & P_BRANCH and lower == HEADER_SIZE):
            return "has no entries"
        return None

    def _overflow(self, name: str, first: int, size: int) -> int:
        needed = -(-(size + HEADER_SIZE) // self.psize)
        if first < 2 or first + needed - 1 > self.meta.last_page:
            self.report.problems.append(f"{name}: overflow page {first} is outside the file")
            return 0
        header = self.page(first)
        stored, _pad, flags, pages = OVERFLOW_HEADER.unpack_from(header)
        if stored != first or not flags & P_OVERFLOW or pages != needed:
            self.report.problems.append(f"{name}: overflow page {first} is damaged")
            return 0
        for pgno in range(first, first + needed):
            if not self._claim(name, pgno):
                return 0
        return needed
