"""Classify statements (read, write, DDL, privileged, transaction, other) for the policy hooks."""

from __future__ import annotations

from goexd.domain.errors import InvalidArgument
from goexd.sql.model import SQL_FIELD, Classified, Dialect, StatementClass
from goexd.sql.postgres_parse import parse_postgres
from goexd.sql.postgres_rules import classify_postgres
from goexd.sql.sqlite_parse import parse_sqlite
from goexd.sql.sqlite_rules import classify_sqlite

__all__ = ["Classified", "StatementClass", "classify", "classify_script"]


def classify_script(script: str, dialect: Dialect, sql_field: str = SQL_FIELD) -> list[Classified]:
    """Split `script` (see split()) and classify each statement, parsing it once.

    A syntax error names `sql_field`: the field the script came in (an inverse's is "inverse.sql.sql")."""
    try:
        if dialect == "postgres":
            return [classify_postgres(stmt) for stmt in parse_postgres(script)]
        if dialect == "sqlite":
            return [classify_sqlite(stmt) for stmt in parse_sqlite(script)]
    except InvalidArgument as exc:
        if exc.field == SQL_FIELD and sql_field != SQL_FIELD:
            raise InvalidArgument(sql_field, exc.problem) from None
        raise
    raise ValueError(f"unknown SQL dialect {dialect!r}")


def classify(statement: str, dialect: Dialect) -> Classified:
    """Classify exactly one statement; InvalidArgument when there is none or several."""
    found = classify_script(statement, dialect)
    if len(found) != 1:
        raise InvalidArgument(SQL_FIELD, f"expected one statement, found {len(found)}")
    return found[0]
