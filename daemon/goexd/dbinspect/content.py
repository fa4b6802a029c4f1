"""What the data readers return: row counts, and a table's order-independent content hash.

A table's content hash is the sum, mod 2^64, of one 64-bit digest per row (the engine's reader
decides how a row becomes a digest). A sum is order-independent and, unlike XOR, keeps
duplicate rows apart (two equal rows do not cancel out). Up to `detail_limit` rows the per-row
digests are kept as well: keyed by primary key when the table has one, else as a multiset
(digest -> how many rows), so a diff can count added, removed and changed rows.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class RowCount:
    rows: int
    exact: bool  # False: a planner estimate, or (over the cap, no estimate) a lower bound
    lower_bound: bool = False

    def text(self) -> str:
        if self.exact:
            return f"{self.rows} row" + ("" if self.rows == 1 else "s")
        if self.lower_bound:
            return f"more than {self.rows} rows"
        return f"~{self.rows} rows (estimate)"


@dataclass(frozen=True)
class TableContent:
    row_count: int
    content_hash: int  # sum of row digests mod 2^64
    by_key: dict[str, int] | None = None  # primary key text -> row digest (tables with a primary key)
    multiset: dict[int, int] | None = None  # row digest -> number of rows (tables without one)


class ContentAccumulator:
    """Sums row digests; keeps them per row while there are at most `detail_limit` rows."""

    def __init__(self, keyed: bool, detail_limit: int) -> None:
        self.keyed = keyed
        self.detail_limit = detail_limit
        self.count = 0
        self.total = 0
        self.by_key: dict[str, int] | None = {} if keyed else None
        self.multiset: dict[int, int] | None = None if keyed else {}

    def add(self, key: str, digest: int) -> None:
        self.count += 1
        self.total += digest
        if self.count > self.detail_limit:
            self.by_key = self.multiset = None
        elif self.by_key is not None:
            if key in self.by_key:  # a SQLite primary key holding NULLs: rows cannot be told apart
                self.by_key = None
            else:
                self.by_key[key] = digest
        elif self.multiset is not None:
            self.multiset[digest] = self.multiset.get(digest, 0) + 1

    def result(self) -> TableContent:
        return TableContent(self.count, self.total & MASK64, self.by_key, self.multiset)
