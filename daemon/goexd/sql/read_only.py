"""Whether a whole script only reads, so that its action can be resolved at once (issue 19).

Stricter than the classification alone (classify.py): a statement counts only when its class is
READ *and* nothing of it outlives the statement. On PostgreSQL that leaves SELECT/VALUES/TABLE
without INTO and without FOR UPDATE/SHARE (row locks held until the transaction ends), EXPLAIN
without ANALYZE, and SHOW; DECLARE and FETCH (a cursor's position is state) are not. The functions
such a script calls are returned, for the resource to look up in the catalog: a volatile one may
write (a user function that INSERTs; nextval() is already WRITE by its classification).
On SQLite every READ statement counts (SELECT, VALUES, WITH ... SELECT, EXPLAIN, a PRAGMA that
only reads): nothing SQLite runs from SQL writes behind a read, and the run is fenced anyway
(PRAGMA query_only).
"""

from __future__ import annotations

from dataclasses import dataclass

from pglast import ast

from goexd.sql.model import Dialect, StatementClass
from goexd.sql.postgres_parse import parse_postgres
from goexd.sql.postgres_rules import classify_postgres, function_name, walk
from goexd.sql.sqlite_parse import parse_sqlite
from goexd.sql.sqlite_rules import classify_sqlite


@dataclass(frozen=True, slots=True)
class ReadOnly:
    """A script found read-only by its parse; `functions`: the names it calls (PostgreSQL), lower case."""

    functions: frozenset[str] = frozenset()


def reads_only(script: str, dialect: Dialect) -> ReadOnly | None:
    """ReadOnly when every statement of `script` only reads, else None (also for an empty script)."""
    if dialect == "sqlite":
        found = [classify_sqlite(stmt) for stmt in parse_sqlite(script)]
        return ReadOnly() if found and all(st.cls is StatementClass.READ for st in found) else None
    statements = parse_postgres(script)
    if not statements:
        return None
    names: set[str] = set()
    for stmt in statements:
        if classify_postgres(stmt).cls is not StatementClass.READ or not _postgres_read(stmt.node):
            return None
        names.update(function_name(node) for node in walk(stmt.node) if isinstance(node, ast.FuncCall))
    return ReadOnly(frozenset(names - {""}))


def _postgres_read(node: ast.Node) -> bool:
    if isinstance(node, ast.VariableShowStmt):
        return True
    if isinstance(node, ast.ExplainStmt):  # its class is READ only without ANALYZE (postgres_rules._explain)
        return True
    if not isinstance(node, ast.SelectStmt):
        return False  # DECLARE, FETCH, COPY TO STDOUT: READ, but leave a cursor or need a stream
    return not any(isinstance(sub, ast.SelectStmt) and (sub.lockingClause or sub.intoClause) for sub in walk(node))
