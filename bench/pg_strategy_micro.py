"""Micro-benchmark of the PostgreSQL inverse and clone resources, called directly (no goexd, no gRPC).

    .venv/bin/python bench/pg_strategy_micro.py [--sizes 100000 1000000] [--repeat 5]

A private cluster (tests/services/postgres.py); per size, a database owned by `app` holding
`users` (id integer primary key, name text, balance integer, an index on name) loaded with
generate_series, then VACUUM ANALYZE; `app` connects over TCP with its password and has
CREATEDB. Prints p50 (ms) over --repeat runs of:

- the copy itself, CREATE DATABASE ... TEMPLATE, as the clone strategy's checkpoint times it
  (target: 1M rows <= 400 ms), with the server's default STRATEGY (wal_log) and with file_copy;
- clone strategy: checkpoint (fingerprint + copy), execute of a one-row UPDATE, undo (swap +
  drop + fingerprint), commit (drop of the copy);
- inverse strategy: the reversibility test of a one-row UPDATE and of one that touches every
  row, beside that UPDATE alone in a rolled-back transaction, and a fingerprint alone (the issue's target: test <= the
  action + 20 ms); checkpoint, execute, undo; and the test of VACUUM on a copy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/...` puts bench/, not the repo root, on sys.path
    sys.path.insert(0, str(REPO))

from goexd.dbinspect import postgres as inspect  # noqa: E402
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy  # noqa: E402
from goexd.domain.sandbox import Limits  # noqa: E402
from goexd.resources.postgres.clone import PostgresCloneResource  # noqa: E402
from goexd.resources.postgres.inverse import PostgresInverseResource  # noqa: E402
from tests.services.postgres import PgCluster, run_pg_cluster  # noqa: E402

LIMITS = Limits(timeout_s=600)
ONE = ActionSpec(ActionKind.SQL, sql="UPDATE users SET balance = balance + 1 WHERE id = 7")
ONE_INV = ActionSpec(ActionKind.SQL, sql="UPDATE users SET balance = balance - 1 WHERE id = 7")
ALL = ActionSpec(ActionKind.SQL, sql="UPDATE users SET balance = balance + 1")
ALL_INV = ActionSpec(ActionKind.SQL, sql="UPDATE users SET balance = balance - 1")


def ms(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def p50(xs: list[float]) -> str:
    return f"{statistics.median(xs):.0f}"


def load(cluster: PgCluster, rows: int) -> str:
    db = cluster.create_database()
    with cluster.connect_app(db) as conn:
        conn.execute("CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, balance integer NOT NULL)")
        conn.execute("INSERT INTO users SELECT i, 'user' || i, i %% 1000 FROM generate_series(1, %s) i", (rows,))
        conn.execute("CREATE INDEX users_name ON users (name)")
        conn.execute("VACUUM ANALYZE users")
    return db


def bench_clone(cluster: PgCluster, db: str, repeat: int, copy_strategy: str | None) -> dict[str, list[float]]:
    res = PostgresCloneResource(
        Resource("db", ResourceKind.POSTGRES, cluster.app_dsn_for(db), UndoStrategy.CLONE),
        cluster.app_password,
        copy_strategy=copy_strategy,
    )
    t: dict[str, list[float]] = {k: [] for k in ("copy", "checkpoint", "execute", "undo", "commit")}
    try:
        for i in range(repeat * 2):
            aid = f"act_b{i}"
            took, cp = ms(partial(res.checkpoint, aid))
            assert isinstance(cp, dict)
            t["checkpoint"].append(took)
            t["copy"].append(float(cp["clone_s"]) * 1000)
            took, _ = ms(partial(res.execute, ONE, LIMITS, cp, None, None))
            t["execute"].append(took)
            if i % 2 == 0:
                took, report = ms(partial(res.rollback, aid, cp))
                assert getattr(report, "verified", False), report
                t["undo"].append(took)
            else:
                took, _ = ms(partial(res.commit, aid, cp))
                t["commit"].append(took)
    finally:
        res.close()
    return t


def bench_inverse(cluster: PgCluster, db: str, repeat: int) -> dict[str, list[float]]:
    res = PostgresInverseResource(
        Resource("db", ResourceKind.POSTGRES, cluster.app_dsn_for(db), UndoStrategy.INVERSE), cluster.app_password
    )
    keys = ("fingerprint", "action one", "test one", "checkpoint", "execute", "undo", "test vacuum (copy)")
    t: dict[str, list[float]] = {k: [] for k in (*keys, "action all", "test all")}
    vacuum, noop = ActionSpec(ActionKind.SQL, sql="VACUUM users"), ActionSpec(ActionKind.SQL, sql="SELECT 1")
    try:
        for _ in range(repeat):
            conn = res._db.conn()  # the copy test below closes it (it steps aside for the copy)
            t["fingerprint"].append(ms(partial(inspect.fingerprint, conn))[0])
            with conn.transaction(force_rollback=True):
                t["action one"].append(ms(partial(conn.execute, ONE.sql))[0])
            t["test one"].append(ms(partial(res.test, ONE, ONE_INV, LIMITS, None))[0])
            took, cp = ms(partial(res.checkpoint, "act_i", ONE_INV))
            assert isinstance(cp, dict)
            t["checkpoint"].append(took)
            took, out = ms(partial(res.execute, ONE, LIMITS, cp, None, None))
            t["execute"].append(took)
            took, report = ms(partial(res.rollback, "act_i", {**cp, **getattr(out, "checkpoint_extra", {})}))
            assert getattr(report, "verified", False), report
            t["undo"].append(took)
            t["test vacuum (copy)"].append(ms(partial(res.test, vacuum, noop, LIMITS, None))[0])
        # Last: every rolled-back UPDATE of all rows leaves a dead version of each, which slows what follows.
        for _ in range(repeat):
            conn = res._db.conn()
            with conn.transaction(force_rollback=True):
                t["action all"].append(ms(partial(conn.execute, ALL.sql))[0])
            t["test all"].append(ms(partial(res.test, ALL, ALL_INV, LIMITS, None))[0])
    finally:
        res.close()
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--copy-strategies", nargs="+", default=["default", "file_copy"])
    args = ap.parse_args()
    with run_pg_cluster() as cluster:
        with cluster.connect() as su:
            su.execute("ALTER ROLE app CREATEDB")
        for rows in args.sizes:
            db = load(cluster, rows)
            with cluster.connect() as su:
                size = su.execute("SELECT pg_size_pretty(pg_database_size(%s))", (db,)).fetchone()
            print(f"\n## {rows:,} rows ({size[0] if size else '?'}), p50 ms over {args.repeat} runs")
            results = [
                (f"clone ({how})", bench_clone(cluster, db, args.repeat, None if how == "default" else how))
                for how in args.copy_strategies
            ]
            for label, result in [*results, ("inverse", bench_inverse(cluster, db, args.repeat))]:
                print(f"{label}: " + ", ".join(f"{k} {p50(v)}" for k, v in result.items() if v))
            cluster.drop_database(db)


if __name__ == "__main__":
    main()
