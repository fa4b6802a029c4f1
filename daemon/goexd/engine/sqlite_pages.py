"""Rows of a damaged SQLite file read from its pages, for what no b-tree walk reaches any more.

When an interior page of a table is destroyed, SQLite cannot reach the leaf pages under it,
but they are still in the file. This finds the table-leaf pages that no b-tree reaches and that
are not on the freelist (a freed page keeps old rows: they must not come back), and decodes
their cells (https://sqlite.org/fileformat2.html: b-tree pages, cells, overflow, records).
Anything malformed is skipped, never raised: the input is damaged by definition.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

TABLE_LEAF, TABLE_INTERIOR, INDEX_LEAF, INDEX_INTERIOR = 0x0D, 0x05, 0x0A, 0x02


@dataclass(frozen=True)
class PageFile:
    data: bytes
    page_size: int
    usable: int  # page size less the reserved bytes at each page's end

    @classmethod
    def parse(cls, data: bytes) -> PageFile | None:
        """None when the header gives no usable page size."""
        if len(data) < 100:
            return None
        raw = struct.unpack_from(">H", data, 16)[0]
        size = 65536 if raw == 1 else raw
        if size < 512 or size & (size - 1):
            return None
        return cls(data, size, size - data[20])

    @property
    def pages(self) -> int:
        return len(self.data) // self.page_size

    def page(self, n: int) -> bytes:
        return self.data[(n - 1) * self.page_size : n * self.page_size]

    def header_offset(self, n: int) -> int:
        return 100 if n == 1 else 0


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        b = buf[pos + i]
        value = (value << 7) | (b & 0x7F)
        if b < 0x80:
            return value, pos + i + 1
    return (value << 8) | buf[pos + 8], pos + 9


def freelist(f: PageFile, header: bytes) -> set[int]:
    """Every page on the freelist (trunk and leaf pages), from the first trunk `header` names."""
    out: set[int] = set()
    trunk = struct.unpack_from(">I", header, 32)[0]
    while 0 < trunk <= f.pages and trunk not in out:
        out.add(trunk)
        page = f.page(trunk)
        count = struct.unpack_from(">I", page, 4)[0]
        if count > (f.usable - 8) // 4:
            break
        out.update(struct.unpack_from(f">{count}I", page, 8))
        trunk = struct.unpack_from(">I", page, 0)[0]
    return out


def reachable(f: PageFile, roots: Iterable[int]) -> set[int]:
    """The b-tree pages reached from `roots` (page 1, the schema, is always one)."""
    seen: set[int] = set()
    todo = [1, *roots]
    while todo:
        n = todo.pop()
        if not 0 < n <= f.pages or n in seen:
            continue
        seen.add(n)
        page, hdr = f.page(n), f.header_offset(n)
        if page[hdr] not in (TABLE_INTERIOR, INDEX_INTERIOR):
            continue
        try:
            cells = struct.unpack_from(">H", page, hdr + 3)[0]
            todo.append(struct.unpack_from(">I", page, hdr + 8)[0])
            for i in range(cells):
                ptr = struct.unpack_from(">H", page, hdr + 12 + 2 * i)[0]
                todo.append(struct.unpack_from(">I", page, ptr)[0])
        except struct.error:
            continue
    return seen


def orphan_rows(f: PageFile, skip: set[int]) -> Iterator[tuple[int, list[object]]]:
    """(rowid, values) of every cell of a table-leaf page not in `skip`."""
    for n in range(1, f.pages + 1):
        if n in skip:
            continue
        page, hdr = f.page(n), f.header_offset(n)
        if page[hdr] != TABLE_LEAF:
            continue
        try:
            cells = struct.unpack_from(">H", page, hdr + 3)[0]
            pointers = [struct.unpack_from(">H", page, hdr + 8 + 2 * i)[0] for i in range(cells)]
        except struct.error:
            continue
        for ptr in pointers:
            try:
                yield _cell(f, page, ptr)
            except (IndexError, ValueError, struct.error, UnicodeDecodeError):
                continue  # a damaged cell


def _cell(f: PageFile, page: bytes, ptr: int) -> tuple[int, list[object]]:
    size, pos = _varint(page, ptr)
    rowid, pos = _varint(page, pos)
    if rowid >= 1 << 63:
        rowid -= 1 << 64
    u = f.usable
    x = u - 35
    if size <= x:
        payload = page[pos : pos + size]
    else:
        m = ((u - 12) * 32 // 255) - 23
        k = m + ((size - m) % (u - 4))
        local = k if k <= x else m
        payload = page[pos : pos + local] + _overflow(f, struct.unpack_from(">I", page, pos + local)[0], size - local)
    if len(payload) != size:
        raise ValueError("short payload")
    return rowid, _record(payload)


def _overflow(f: PageFile, first: int, length: int) -> bytes:
    out = bytearray()
    n, seen = first, set()
    while length > len(out):
        if not 0 < n <= f.pages or n in seen:
            raise ValueError("broken overflow chain")
        seen.add(n)
        page = f.page(n)
        out += page[4 : f.usable][: length - len(out)]
        n = struct.unpack_from(">I", page, 0)[0]
    return bytes(out)


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _record(payload: bytes) -> list[object]:
    header_size, pos = _varint(payload, 0)
    types = []
    while pos < header_size:
        t, pos = _varint(payload, pos)
        types.append(t)
    body = header_size
    values: list[object] = []
    for t in types:
        if t == 0:
            values.append(None)
        elif t in _INT_SIZES:
            n = _INT_SIZES[t]
            values.append(int.from_bytes(payload[body : body + n], "big", signed=True))
            body += n
        elif t == 7:
            values.append(struct.unpack_from(">d", payload, body)[0])
            body += 8
        elif t in (8, 9):
            values.append(t - 8)
        elif t >= 12:
            n = (t - 12) // 2
            chunk = payload[body : body + n]
            values.append(chunk if t % 2 == 0 else chunk.decode())
            body += n
        else:
            raise ValueError(f"reserved serial type {t}")
    if body != len(payload):
        raise ValueError("record length mismatch")
    return values
