"""Micro-benchmark of PostgreSQL schema inspection: read_schema and fingerprint, called directly.

    .venv/bin/python bench/pg_schema_micro.py [--tables 50] [--repeat 30] [--rows 1000000]

A private cluster (tests/services/postgres.py); a database owned by `app` holding --tables tables
(id serial primary key, name text, qty integer, created timestamptz, an index on name, a CHECK,
100 rows each), a view on every fifth table, a materialized view on every tenth (its 100 rows),
a domain, a composite type, an enum, a function, and 3 large objects of 8 KiB. `app` connects over
TCP with its password. Prints p50 / p99 (ms) over --repeat runs of pg_catalog.read_schema (the
catalog reads every reversibility test makes at its start) and of a whole fingerprint (the schema
and every table's rows: what an inverse-strategy action takes before and after it, and its undo).
With --rows N (0: skipped), a second database holding `users` (id integer primary key, name text,
balance integer, an index on name) of N rows: the reversibility test of a one-row UPDATE and its
inverse (PostgresInverseResource.test, called directly) beside that UPDATE alone in a rolled-back
transaction (the issue's bound: the test <= the action + 20 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/...` puts bench/, not the repo root, on sys.path
    sys.path.insert(0, str(REPO))

from goexd.dbinspect import pg_catalog  # noqa: E402
from goexd.dbinspect import postgres as inspect  # noqa: E402
from goexd.dbinspect.backend import reading  # noqa: E402
from goexd.domain.models import ActionKind, ActionSpec, Resource, ResourceKind, UndoStrategy  # noqa: E402
from goexd.domain.sandbox import Limits  # noqa: E402
from goexd.resources.postgres.inverse import PostgresInverseResource  # noqa: E402
from tests.services.postgres import PgCluster, run_pg_cluster  # noqa: E402


def load(cluster: PgCluster, tables: int) -> str:
    db = cluster.create_database(owner="app")
    with cluster.connect_app(db) as conn:
        conn.execute("CREATE DOMAIN qty AS integer DEFAULT 0 NOT NULL CHECK (VALUE >= 0)")
        conn.execute("CREATE TYPE pair AS (a integer, b text)")
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
        conn.execute("CREATE FUNCTION twice(x integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 2 * x'")
        for i in range(tables):
            conn.execute(
                f"CREATE TABLE t{i} (id serial PRIMARY KEY, name text NOT NULL, qty qty,"
                f" created timestamptz DEFAULT now(), CHECK (length(name) < 100))"
            )
            conn.execute(f"CREATE INDEX t{i}_name ON t{i} (name)")
            conn.execute(f"INSERT INTO t{i} (name, qty) SELECT 'n' || g, g FROM generate_series(1, 100) g")
            if i % 5 == 0:
                conn.execute(f"CREATE VIEW v{i} AS SELECT id, name FROM t{i} WHERE qty > 10")
            if i % 10 == 0:
                conn.execute(f"CREATE MATERIALIZED VIEW mv{i} AS SELECT id, qty FROM t{i}")
        for oid in (1001, 1002, 1003):
            conn.execute("SELECT lo_from_bytea(%s, decode(repeat('ab', 4096), 'hex'))", (oid,))
        conn.execute("ANALYZE")
    return db


def bench_one_row(cluster: PgCluster, rows: int, repeat: int) -> dict[str, list[float]]:
    db = cluster.create_database(owner="app")
    with cluster.connect(db) as su:
        su.execute("CREATE TABLE users (id integer PRIMARY KEY, name text NOT NULL, balance integer NOT NULL)")
        su.execute("INSERT INTO users SELECT i, 'user' || i, i %% 1000 FROM generate_series(1, %s) i", (rows,))
        su.execute("CREATE INDEX users_name ON users (name)")
        su.execute("ALTER TABLE users OWNER TO app")
        su.execute("VACUUM ANALYZE users")
    one = "UPDATE users SET balance = balance + 1 WHERE id = 4242"
    action = ActionSpec(ActionKind.SQL, sql=one)
    inverse = ActionSpec(ActionKind.SQL, sql="UPDATE users SET balance = balance - 1 WHERE id = 4242")
    res = PostgresInverseResource(
        Resource("db", ResourceKind.POSTGRES, cluster.app_dsn_for(db), UndoStrategy.INVERSE), cluster.app_password
    )
    times: dict[str, list[float]] = {"action (1 row, rolled back)": [], "test (1 row)": []}
    try:
        with cluster.connect_app(db) as conn:
            for _ in range(repeat):
                with conn.transaction(force_rollback=True):
                    t0 = time.perf_counter()
                    conn.execute(one)
                    times["action (1 row, rolled back)"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                res.test(action, inverse, Limits(timeout_s=600), None)
                times["test (1 row)"].append((time.perf_counter() - t0) * 1000)
    finally:
        res.close()
    return times


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered):.1f} / {p99:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--rows", type=int, default=0)
    args = ap.parse_args()
    with run_pg_cluster() as cluster:
        db = load(cluster, args.tables)
        with cluster.connect_app(db) as conn:
            times: dict[str, list[float]] = {"read_schema": [], "fingerprint": []}
            for _ in range(args.repeat):
                with reading(conn):
                    t0 = time.perf_counter()
                    schema = pg_catalog.read_schema(conn)
                    times["read_schema"].append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                inspect.fingerprint(conn)
                times["fingerprint"].append((time.perf_counter() - t0) * 1000)
        kinds = {r.kind for r in schema.relations}
        facts = len(schema.states) + len(getattr(schema, "settings", ()))  # (no settings before they were read)
        print(
            f"{args.tables} tables, {len(schema.relations)} relations ({', '.join(sorted(kinds))}), "
            f"{facts} states and settings; p50 / p99 (ms) over {args.repeat} runs"
        )
        for name, samples in times.items():
            print(f"| {name} | {ms(samples)} |")
        if args.rows:
            print(f"users of {args.rows} rows; p50 / p99 (ms) over {args.repeat} runs")
            for name, samples in bench_one_row(cluster, args.rows, args.repeat).items():
                print(f"| {name} | {ms(samples)} |")


if __name__ == "__main__":
    main()
