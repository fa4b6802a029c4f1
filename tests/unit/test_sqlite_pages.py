"""Rows read back from the raw pages of a damaged SQLite file (engine/sqlite_pages.py), on files
SQLite itself wrote: every value type, rows long enough to need overflow pages, a destroyed
interior page, and freed pages whose old rows must not come back."""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

from goexd.engine import sqlite_pages

ROWS = 300


def _make(path: Path) -> dict[int, list[object]]:
    db = sqlite3.connect(path)
    db.execute("PRAGMA page_size = 1024")
    db.execute("CREATE TABLE t (a TEXT, b INTEGER, c REAL, d BLOB, e)")
    rows: dict[int, list[object]] = {}
    with db:
        for i in range(1, ROWS + 1):
            big = "x" * (3000 if i % 10 == 0 else 20)  # every tenth row spills onto overflow pages
            row: list[object] = [f"{i}-{big}", i * 1_000_003 - 2**40, i / 7, bytes([i % 256]) * 5, None]
            db.execute("INSERT INTO t (rowid, a, b, c, d, e) VALUES (?, ?, ?, ?, ?, ?)", (i, *row))
            rows[i] = row
    db.close()
    return rows


def _root(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 't'").fetchone()[0])


def test_rows_under_a_destroyed_interior_page_are_read_from_its_leaves(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    rows = _make(path)
    root = _root(path)
    data = bytearray(path.read_bytes())
    f = sqlite_pages.PageFile.parse(bytes(data))
    assert f is not None and f.page_size == 1024
    assert data[(root - 1) * 1024] == sqlite_pages.TABLE_INTERIOR  # control: a root with leaves below it
    data[(root - 1) * 1024 : root * 1024] = bytes(1024)
    path.write_bytes(data)
    with sqlite3.connect(path) as db:  # control: SQLite reaches none of them now
        try:
            reached = len(db.execute("SELECT * FROM t").fetchall())
        except sqlite3.DatabaseError:
            reached = 0
    assert reached == 0
    f = sqlite_pages.PageFile.parse(bytes(data))
    assert f is not None
    found = dict(sqlite_pages.orphan_rows(f, sqlite_pages.reachable(f, []) | sqlite_pages.freelist(f, f.data)))
    assert found == rows


def test_freed_pages_give_no_rows_back(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    rows = _make(path)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA secure_delete = OFF")  # freed pages keep their old rows (a build may default to ON)
        db.execute("DELETE FROM t WHERE rowid > 100")
    kept = {k: v for k, v in rows.items() if k <= 100}
    f = sqlite_pages.PageFile.parse(path.read_bytes())
    assert f is not None
    free = sqlite_pages.freelist(f, f.data)
    assert free, "control: the delete freed pages"
    everything = dict(sqlite_pages.orphan_rows(f, set()))
    assert set(everything) - set(kept), "control: freed pages still hold deleted rows"
    assert dict(sqlite_pages.orphan_rows(f, free)) == kept  # the freed pages skipped: only live rows
    live = sqlite_pages.reachable(f, [_root(path)])
    assert dict(sqlite_pages.orphan_rows(f, live | free)) == {}  # and every live row is reachable


def test_garbage_is_skipped_not_raised() -> None:
    page = bytearray(1024)
    header = bytearray(100)
    header[0:16] = b"SQLite format 3\x00"
    struct.pack_into(">H", header, 16, 1024)
    page[:100] = header
    page[100] = sqlite_pages.TABLE_LEAF
    struct.pack_into(">H", page, 103, 3)  # three cells whose pointers lead nowhere sensible
    struct.pack_into(">HHH", page, 108, 1020, 4000, 200)
    page[200:210] = b"\xff" * 10
    f = sqlite_pages.PageFile.parse(bytes(page) * 2)
    assert f is not None
    assert list(sqlite_pages.orphan_rows(f, set())) == []
    assert sqlite_pages.PageFile.parse(b"short") is None
