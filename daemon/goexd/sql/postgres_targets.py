"""The tables a PostgreSQL script writes rows of, as it names them (pglast's parse tree).

INSERT, UPDATE, DELETE and MERGE targets, also inside WITH clauses and EXPLAIN ANALYZE. A hint,
not a bound: functions, triggers, rules and foreign-key actions can write other tables, and
names resolve through search_path only when the statement runs. The reversibility test uses it
to choose the tables it captures changes on, and checks afterwards which tables were written.
"""

from __future__ import annotations

from pglast import ast

from goexd.sql.postgres_parse import parse_postgres
from goexd.sql.postgres_rules import walk

_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


def written_tables(script: str) -> list[tuple[str | None, str]]:
    """(schema or None, table) for every table the script's statements write rows of, first seen first."""
    found: dict[tuple[str | None, str], None] = {}
    for stmt in parse_postgres(script):
        for node in walk(stmt.node):
            if isinstance(node, _WRITES) and node.relation is not None and node.relation.relname:
                found.setdefault((node.relation.schemaname or None, node.relation.relname), None)
    return list(found)
