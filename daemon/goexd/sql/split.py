"""Split a multi-statement script into its statements with a real SQL parser, never on ';'."""

from __future__ import annotations

from goexd.sql.model import Dialect
from goexd.sql.postgres_parse import parse_postgres
from goexd.sql.sqlite_parse import parse_sqlite


def split(script: str, dialect: Dialect) -> list[str]:
    """The statements of `script`, each exactly as written, without the ';' between them.

    PostgreSQL: pglast (PostgreSQL's own parser). SQLite: sqlglot's SQLite tokenizer, with every
    statement checked by SQLite's parser. Empty statements and comments between statements are
    dropped. A syntax error anywhere raises InvalidArgument("spec.sql.sql", message with its
    line and column) before any statement is returned.
    """
    if dialect == "postgres":
        return [stmt.text for stmt in parse_postgres(script)]
    if dialect == "sqlite":
        return [stmt.text for stmt in parse_sqlite(script)]
    raise ValueError(f"unknown SQL dialect {dialect!r}")
