"""What the SQLite and PostgreSQL plug-ins of the resource suite share: the actions, as SQL text."""

from __future__ import annotations

from goexd.domain.models import ActionKind, ActionSpec

SEED = "CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL); INSERT INTO t VALUES (1, 'one'), (2, 'two')"


def sql(text: str) -> ActionSpec:
    return ActionSpec(ActionKind.SQL, sql=text)


def change(n: int) -> tuple[ActionSpec, ActionSpec]:
    """A write touching an existing row and adding one, with its inverse."""
    return (
        sql(f"UPDATE t SET v = v || '+{n}' WHERE id = 1; INSERT INTO t VALUES ({100 + n}, 'new {n}')"),
        sql(
            f"DELETE FROM t WHERE id = {100 + n}; UPDATE t SET v = substr(v, 1, length(v) - {len(str(n)) + 1}) "
            "WHERE id = 1"
        ),
    )


# Its first statement writes, its second fails (a duplicate key): the whole action must go.
FAILING = (
    sql("UPDATE t SET v = 'changed' WHERE id = 2; INSERT INTO t VALUES (1, 'duplicate')"),
    sql("UPDATE t SET v = 'two' WHERE id = 2; DELETE FROM t WHERE id = 1 AND v = 'duplicate'"),
)
READ = sql("SELECT v FROM t ORDER BY id")
BAD = sql("SELEC v FROM t")
BAD_FIELD = "spec"
