"""The outcome markers (outcomes.py) in a PostgreSQL database: `<schema>.goex_outcomes`.

The schema is the one first on the resource connection's search_path when the session opens
(current_schema(), usually public); the table is named with it from then on, so an action that
changes search_path does not move it. goexd creates the table when it is missing; a role that
may not (no CREATE on the schema, a read-only database) or that lacks SELECT, INSERT and DELETE
on it has the inverse strategy refused at session open with the statements an owner can run.
Writes go into the caller's open transaction, or commit at once on an autocommit connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from goexd.domain.errors import FailedPrecondition
from goexd.resources.outcomes import PURPOSE, TABLE

Conn = psycopg.Connection[Any]

_COLUMNS = (
    "action_id text NOT NULL, step text NOT NULL, at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (action_id, step)"
)
_PRIVILEGES = ("SELECT", "INSERT", "DELETE")


class PgMarks:
    def __init__(self, where: str, message: Callable[[psycopg.Error], str]) -> None:
        self._where = where  # the database, for messages
        self._message = message  # PostgreSQL's message, the password scrubbed
        self._table: sql.Composed | None = None

    @property
    def table(self) -> sql.Composed:
        assert self._table is not None, "ensure() first"
        return self._table

    def ensure(self, conn: Conn) -> None:
        """At session open, on an idle autocommit connection: the table is there and usable, or FailedPrecondition."""
        row = conn.execute("SELECT current_schema(), current_user").fetchone()
        schema, role = (row[0], str(row[1])) if row else (None, "")
        if schema is None:
            raise FailedPrecondition(
                f"the inverse strategy keeps a table {TABLE} in database {self._where} to settle, after a crash, "
                "whether an action or its undo committed; the connection's search_path names no existing schema "
                "to keep it in"
            )
        table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(TABLE))
        create = sql.SQL("CREATE TABLE {} ({}); COMMENT ON TABLE {} IS {}").format(
            table, sql.SQL(_COLUMNS), table, sql.Literal(PURPOSE)
        )
        grant = sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(", ".join(_PRIVILEGES)), table, sql.Identifier(role))
        if not self._exists(conn, table):
            try:
                conn.execute(create)
            except (pg_errors.DuplicateTable, pg_errors.UniqueViolation):
                pass  # another goexd created it meanwhile
            except psycopg.Error as exc:
                raise FailedPrecondition(
                    f"the inverse strategy keeps a table {TABLE} in database {self._where} to settle, after a "
                    f"crash, whether an action or its undo committed, and cannot create it "
                    f"({self._message(exc)}); an owner can: {create.as_string(conn)}; {grant.as_string(conn)} "
                    "(or use the transaction or clone strategy)"
                ) from None
        missing = [p for p in _PRIVILEGES if not self._may(conn, table, p)]
        if missing:
            raise FailedPrecondition(
                f"the inverse strategy writes outcome markers into {table.as_string(conn)} in database "
                f"{self._where}, and this role lacks {', '.join(missing)} on it; an owner can grant them: "
                f"{grant.as_string(conn)}"
            )
        self._table = table

    def write(self, conn: Conn, action_id: str, step: str) -> None:
        """The marker, in the connection's open transaction (or at once, in autocommit). Raises psycopg.Error."""
        conn.execute(
            sql.SQL("INSERT INTO {} (action_id, step) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(self.table),
            (action_id, step),
        )

    def steps(self, conn: Conn, action_id: str) -> frozenset[str]:
        query = sql.SQL("SELECT step FROM {} WHERE action_id = %s").format(self.table)
        try:
            return frozenset(str(r[0]) for r in conn.execute(query, (action_id,)).fetchall())
        except pg_errors.UndefinedTable:  # dropped by someone: no marker is there
            return frozenset()

    def marked(self, conn: Conn) -> list[str]:
        query = sql.SQL("SELECT DISTINCT action_id FROM {}").format(self.table)
        return [str(r[0]) for r in conn.execute(query).fetchall()]

    def drop(self, conn: Conn, action_ids: Sequence[str]) -> None:
        if action_ids:
            conn.execute(sql.SQL("DELETE FROM {} WHERE action_id = ANY(%s)").format(self.table), (list(action_ids),))

    @staticmethod
    def _exists(conn: Conn, table: sql.Composed) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),)).fetchone()
        return bool(row and row[0])

    @staticmethod
    def _may(conn: Conn, table: sql.Composed, privilege: str) -> bool:
        row = conn.execute("SELECT has_table_privilege(%s, %s)", (table.as_string(conn), privilege)).fetchone()
        return bool(row and row[0])
