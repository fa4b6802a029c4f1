"""The vocabulary of goexd.sql: dialects, statement classes and a classified statement."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

# The request field every syntax error names (goex.v1 ActionSpec.sql.sql).
SQL_FIELD = "spec.sql.sql"


class StatementClass(StrEnum):
    READ = "read"  # SELECT, EXPLAIN, SHOW, a PRAGMA that reads
    WRITE = "write"  # INSERT, UPDATE, DELETE, MERGE, COPY FROM STDIN, nextval()...
    DDL = "ddl"  # CREATE/ALTER/DROP of tables, indexes, views..., TRUNCATE
    PRIVILEGED = "privileged"  # refused unless the session's policy allows it
    TRANSACTION = "transaction"  # BEGIN/COMMIT/ROLLBACK/SAVEPOINT...: goexd manages transactions itself
    OTHER = "other"  # SET, VACUUM, LOCK, LISTEN, maintenance...


@dataclass(frozen=True, slots=True)
class Classified:
    """One statement of a script, exactly as written, and what it is.

    `transactional` is False when a transaction cannot roll the statement back or the
    statement cannot run inside one (VACUUM, CREATE DATABASE, nextval(), most PRAGMA writes...).
    """

    sql: str
    cls: StatementClass
    reason: str
    transactional: bool = True
    # Once committed, what no inverse takes back (the inverse strategy commits each action at once), in words;
    # "" when nothing. `escapes`: an effect outside the database (a notification, delivered at commit);
    # `permanent`: a change of the database no statement can revert (an enum value added).
    escapes: str = ""
    permanent: str = ""
