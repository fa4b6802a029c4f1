"""`make bench`, third part: SQL actions through goexd on PostgreSQL and SQLite, beside a baseline.

Everything goes through a real goexd over gRPC (round trips as a client sees them; default
config, so journal_sync=full) to a private PostgreSQL cluster (tests/services/postgres.py: over
TCP as the role `app`, its password from goexd's vault) holding `users` (id serial primary key,
name text, balance int, an index on name) with 100k and with 1M rows, loaded with
generate_series by the superuser, then VACUUM ANALYZE; VACUUM FULL between the sections below.

1. Per undo strategy (transaction, inverse, clone), p50/p99: the round trip of a small write,
   `UPDATE users SET balance = balance + 1 WHERE id = $1` (a random id, sent as a parameter;
   under inverse with the inverse `- 1`), until its result; then the undo of that action.
2. Inverse strategy: `TestReversibility` on its own, for that 1-row write and for one touching
   every row, beside the same write's round trip under the transaction strategy (the action
   itself). Clone strategy: the clone's cost, as goexd's own `timings.prepare` of the action.
3. Baseline, the prototype's way to test reversibility: `pg_dump -Fc` of the database, then a
   fresh database and `pg_restore` into it (run as the cluster's user, like the fixture's
   binaries), p50 over a few runs.
4. SQLite, a file with 100k rows: action + undo for its three strategies.

Strategies goexd does not accept yet (UNIMPLEMENTED) print "not built yet" in their rows.
Prints Markdown tables and writes them to bench/db_results.md.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from measure import ms_since, pct, progress, publish, table

from goex.v1 import actions_pb2 as apb
from goex.v1 import actions_pb2_grpc, secrets_pb2_grpc, sessions_pb2_grpc
from goex.v1 import secrets_pb2 as secpb
from goex.v1 import sessions_pb2 as spb
from goex.v1 import types_pb2 as pb
from goexd.launcher import DaemonProcess

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/db_bench.py` puts bench/, not the repo root, on sys.path
    sys.path.insert(0, str(REPO))

from tests.services.postgres import PgCluster, pg_bindir, run_pg_cluster  # noqa: E402

CORES = os.cpu_count() or 1
SECRET = "pgpass"
ONE_ROW = "UPDATE users SET balance = balance + 1 WHERE id = $1"
ONE_ROW_INVERSE = "UPDATE users SET balance = balance - 1 WHERE id = $1"
ALL_ROWS = "UPDATE users SET balance = balance + 1"
ALL_ROWS_INVERSE = "UPDATE users SET balance = balance - 1"
STRATEGIES = [
    ("transaction", pb.UNDO_STRATEGY_TRANSACTION),
    ("inverse", pb.UNDO_STRATEGY_INVERSE),
    ("clone", pb.UNDO_STRATEGY_CLONE),
]
NOT_BUILT = "not built yet"
RPC_TIMEOUT = 600
PREPARE_NOTE = (
    "prepare: goexd's own `timings.prepare` of the action, before the statement runs (the inverse "
    "strategy's reversibility test, the clone strategy's clone, the savepoint; journal writes)."
)


# ---------------------------------------------------------------- helpers


def p50(xs: list[float] | None) -> float:
    assert xs
    return pct(xs, 0.5)


def p50_p99(xs: list[float] | None, digits: int = 1) -> str:
    if not xs:
        return NOT_BUILT
    return f"{pct(xs, 0.5):.{digits}f} / {pct(xs, 0.99):.{digits}f}"


def verdict(value: float, limit: float) -> str:
    return f"met (≤ {limit:.0f})" if value <= limit else f"**missed** (> {limit:.0f})"


def ratio(x: float) -> str:
    return f"{x:.0f}x" if x >= 10 else f"{x:.1f}x"


def human(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k"


class NotBuiltError(Exception):
    """goexd answered UNIMPLEMENTED: the strategy (or call) is not built yet."""


@dataclass
class Goexd:
    daemon: DaemonProcess
    sessions: sessions_pb2_grpc.SessionsStub = field(init=False)
    actions: actions_pb2_grpc.ActionsStub = field(init=False)
    secrets: secrets_pb2_grpc.SecretsStub = field(init=False)

    def __post_init__(self) -> None:
        ch = self.daemon.connect()
        self.sessions = sessions_pb2_grpc.SessionsStub(ch)
        self.actions = actions_pb2_grpc.ActionsStub(ch)
        self.secrets = secrets_pb2_grpc.SecretsStub(ch)

    def open(self, url: str, strategy: int, secret: str = "") -> str:
        spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=url, secret=secret), strategy=strategy)
        try:
            req = spb.CreateSessionRequest(resources=[spec])
            return str(self.sessions.CreateSession(req, timeout=RPC_TIMEOUT).session.id)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise NotBuiltError(e.details()) from None
            raise

    def close(self, session_id: str) -> None:
        req = spb.CloseSessionRequest(session_id=session_id, mode=spb.CLOSE_MODE_COMMIT_ALL)
        self.sessions.CloseSession(req, timeout=RPC_TIMEOUT)


def sql_spec(text: str, *params: str) -> pb.ActionSpec:
    return pb.ActionSpec(sql=pb.SqlAction(sql=text, params=list(params)))


@dataclass
class Runs:
    action: list[float] = field(default_factory=list)
    undo: list[float] = field(default_factory=list)
    prepare: list[float] = field(default_factory=list)  # goexd's own timings.prepare (test + checkpoint)


def bench_actions(g: Goexd, session_id: str, make: Callable[[int], apb.SubmitActionRequest], reps: int) -> Runs:
    """Submit, then undo, reps times (after 2 warm-up rounds that are not counted)."""
    runs = Runs()
    for i in range(reps + 2):
        req = make(i)
        t0 = time.perf_counter()
        action = g.actions.SubmitAction(req, timeout=RPC_TIMEOUT).action
        dt_action = ms_since(t0)
        assert action.state == pb.ACTION_STATE_EXECUTED, (action.state, action.error)
        t0 = time.perf_counter()
        undone = g.actions.UndoAction(apb.UndoActionRequest(session_id=session_id), timeout=RPC_TIMEOUT).undone
        dt_undo = ms_since(t0)
        assert [a.id for a in undone] == [action.id] and undone[0].state == pb.ACTION_STATE_UNDONE, undone
        if i >= 2:
            runs.action.append(dt_action)
            runs.undo.append(dt_undo)
            runs.prepare.append(action.timings.prepare.ToTimedelta().total_seconds() * 1000)
    return runs


def bench_test(g: Goexd, req: apb.TestReversibilityRequest, reps: int) -> list[float]:
    out = []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        try:
            rev = g.actions.TestReversibility(req, timeout=RPC_TIMEOUT).reversibility
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                raise NotBuiltError(e.details()) from None
            raise
        dt = ms_since(t0)
        assert rev.verdict == pb.VERDICT_PASSED, (rev.verdict, rev.detail)
        if i >= 1:
            out.append(dt)
    return out


# ---------------------------------------------------------------- PostgreSQL


def load_users(cluster: PgCluster, n: int) -> str:
    with cluster.connect() as su:
        su.execute("ALTER ROLE app CREATEDB")  # the clone strategy (and inverse tests on a copy) copy the database
    name = cluster.create_database(f"bench_{human(n).lower()}")
    with cluster.connect(name) as conn:
        conn.execute("CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, balance int NOT NULL)")
        conn.execute(
            "INSERT INTO users (name, balance) SELECT 'user' || i, i %% 1000 FROM generate_series(1, %s) i", (n,)
        )
        conn.execute("CREATE INDEX users_name ON users (name)")
        conn.execute("ALTER TABLE users OWNER TO app")
        conn.execute("VACUUM ANALYZE users")
    return name


def vacuum(cluster: PgCluster, db: str) -> None:
    """Between sections, not timed: the dead rows of rolled-back whole-table updates go, and with
    them the space they took (a plain VACUUM left the table up to 5x its size, 508 MB instead of
    101 MB at 1M rows, and the next section copied and scanned all of it)."""
    with cluster.connect(db) as conn:
        conn.execute("VACUUM FULL ANALYZE users")


@dataclass
class PgResult:
    n: int
    strategies: dict[str, Runs | None] = field(default_factory=dict)  # None: not built yet
    all_rows_action: list[float] = field(default_factory=list)  # transaction strategy: the action itself
    test_one: list[float] | None = None
    test_all: list[float] | None = None
    dump: list[float] = field(default_factory=list)
    restore: list[float] = field(default_factory=list)


def bench_pg_strategy(
    g: Goexd, dsn: str, n: int, strategy: int, reps: int, rng: random.Random, res: PgResult, all_reps: int
) -> Runs:
    session_id = g.open(dsn, strategy, SECRET)
    inverse = strategy == pb.UNDO_STRATEGY_INVERSE

    def one_row(_: int) -> apb.SubmitActionRequest:
        row = str(rng.randint(1, n))
        req = apb.SubmitActionRequest(session_id=session_id, spec=sql_spec(ONE_ROW, row))
        if inverse:
            req.inverse.CopyFrom(sql_spec(ONE_ROW_INVERSE, row))
        return req

    runs = bench_actions(g, session_id, one_row, reps)
    if strategy == pb.UNDO_STRATEGY_TRANSACTION:
        progress(f"  {human(n)}: transaction strategy, the all-rows write ...")
        whole = bench_actions(
            g, session_id, lambda _: apb.SubmitActionRequest(session_id=session_id, spec=sql_spec(ALL_ROWS)), all_reps
        )
        res.all_rows_action = whole.action
    if inverse:
        row = str(rng.randint(1, n))
        one = apb.TestReversibilityRequest(
            session_id=session_id, spec=sql_spec(ONE_ROW, row), inverse=sql_spec(ONE_ROW_INVERSE, row)
        )
        res.test_one = bench_test(g, one, reps)
        progress(f"  {human(n)}: TestReversibility of the all-rows write ...")
        whole_req = apb.TestReversibilityRequest(
            session_id=session_id, spec=sql_spec(ALL_ROWS), inverse=sql_spec(ALL_ROWS_INVERSE)
        )
        res.test_all = bench_test(g, whole_req, all_reps)
    g.close(session_id)
    return runs


def as_cluster_user(cluster: PgCluster, argv: list[str]) -> None:
    """Run a PostgreSQL client binary as the user that owns the cluster (setpriv when we are root)."""
    st = cluster.data_dir.stat()
    if os.geteuid() == 0 and st.st_uid != 0:
        argv = ["setpriv", f"--reuid={st.st_uid}", f"--regid={st.st_gid}", "--clear-groups", "--", *argv]
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    r = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{argv} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def bench_dump_restore(cluster: PgCluster, db: str, reps: int) -> tuple[list[float], list[float]]:
    """The prototype's reversibility test: pg_dump -Fc, then pg_restore into a fresh database."""
    bindir = (pg_bindir() / "postgres").resolve().parent  # /usr/local/bin may link only the server's binaries
    conn_args = ["-h", str(cluster.socket_dir), "-p", str(cluster.port), "-U", cluster.superuser]
    dump_file = cluster.data_dir.parent / "bench.dump"  # the cluster's user owns that directory
    dumps, restores = [], []
    for i in range(reps + 1):
        t0 = time.perf_counter()
        as_cluster_user(cluster, [str(bindir / "pg_dump"), "-Fc", *conn_args, "-d", db, "-f", str(dump_file)])
        dt_dump = ms_since(t0)
        t0 = time.perf_counter()
        fresh = cluster.create_database(f"{db}_restore{i}", template="template0")
        as_cluster_user(cluster, [str(bindir / "pg_restore"), *conn_args, "-d", fresh, str(dump_file)])
        dt_restore = ms_since(t0)
        cluster.drop_database(fresh)
        if i >= 1:
            dumps.append(dt_dump)
            restores.append(dt_restore)
    dump_file.unlink(missing_ok=True)
    return dumps, restores


def bench_postgres(g: Goexd, cluster: PgCluster, n: int, reps: int, all_reps: int, base_reps: int) -> PgResult:
    res = PgResult(n)
    progress(f"PostgreSQL, {n:,} rows: loading ...")
    db = load_users(cluster, n)
    dsn = cluster.app_dsn_for(db)
    rng = random.Random(n)
    for name, strategy in STRATEGIES:
        progress(f"  {human(n)}: {name} strategy ...")
        try:
            slow = strategy != pb.UNDO_STRATEGY_TRANSACTION  # a test or a clone per action: fewer rounds
            rounds = max(5, reps // 2) if slow else reps
            res.strategies[name] = bench_pg_strategy(g, dsn, n, strategy, rounds, rng, res, all_reps)
        except NotBuiltError as e:
            progress(f"    {NOT_BUILT}: {e}")
            res.strategies[name] = None
        vacuum(cluster, db)
    progress(f"  {human(n)}: baseline, pg_dump + pg_restore x{base_reps} ...")
    res.dump, res.restore = bench_dump_restore(cluster, db, base_reps)
    cluster.drop_database(db)
    return res


# ---------------------------------------------------------------- SQLite


def make_sqlite(path: Path, n: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL)")
        db.executemany("INSERT INTO users (name, balance) VALUES (?, ?)", ((f"user{i}", i % 1000) for i in range(n)))
        db.execute("CREATE INDEX users_name ON users (name)")
        db.execute("ANALYZE")
    db.close()


def bench_sqlite(g: Goexd, path: Path, n: int, reps: dict[str, int]) -> dict[str, Runs | None]:
    url = f"sqlite://{path}"
    rng = random.Random(7)
    out: dict[str, Runs | None] = {}
    for name, strategy in STRATEGIES:
        progress(f"SQLite, {n:,} rows: {name} strategy ...")
        try:
            session_id = g.open(url, strategy)
        except NotBuiltError as e:
            progress(f"    {NOT_BUILT}: {e}")
            out[name] = None
            continue
        inverse = strategy == pb.UNDO_STRATEGY_INVERSE

        def one_row(_: int, session_id: str = session_id, inverse: bool = inverse) -> apb.SubmitActionRequest:
            row = str(rng.randint(1, n))
            spec = sql_spec("UPDATE users SET balance = balance + 1 WHERE id = ?", row)
            req = apb.SubmitActionRequest(session_id=session_id, spec=spec)
            if inverse:
                req.inverse.CopyFrom(sql_spec("UPDATE users SET balance = balance - 1 WHERE id = ?", row))
            return req

        out[name] = bench_actions(g, session_id, one_row, reps[name])
        g.close(session_id)
    return out


# ---------------------------------------------------------------- report


def report(pg: list[PgResult], lite: dict[str, Runs | None], lite_n: int, server: str, elapsed_s: float) -> str:
    what = (
        f"Measured: SQL actions through a real goexd (gRPC round trips as a client sees them, default config: "
        f"journal_sync=full) on PostgreSQL {server} (private cluster, fsync off, over TCP on 127.0.0.1) and "
        f"SQLite, {CORES} cores; `users` (id serial primary key, name text, balance int, index on name); "
        f"small write = `{ONE_ROW}` with a random id; all-rows write = `{ALL_ROWS}`; VACUUM FULL between "
        f"sections (untimed); whole run {elapsed_s:.0f} s."
    )
    parts = [what, ""]

    # 1. round trips per strategy
    rows = []
    for r in pg:
        for name, _ in STRATEGIES:
            runs = r.strategies.get(name)
            if runs is None:
                rows.append([human(r.n), name, NOT_BUILT, NOT_BUILT, NOT_BUILT, "-"])
                continue
            target = "-"
            if name == "transaction":
                target = f"action {verdict(p50(runs.action), 5)}, undo {verdict(p50(runs.undo), 5)}"
            rows.append(
                [human(r.n), name, p50_p99(runs.action), f"{p50(runs.prepare):.1f}", p50_p99(runs.undo), target]
            )
    parts += [
        "### PostgreSQL: small write, round trip and undo per strategy",
        "",
        PREPARE_NOTE,
        "",
        table(
            [
                "rows",
                "strategy",
                "action p50 / p99 (ms)",
                "of which prepare p50 (ms)",
                "undo p50 / p99 (ms)",
                "target p50 (ms)",
            ],
            "llrrrl",
            rows,
        ),
        "",
    ]

    # 2. the reversibility test alone, and the clone's cost
    rows = []
    for r in pg:
        tx = r.strategies.get("transaction")
        for label, test, action in (
            ("1 row", r.test_one, tx.action if tx else None),
            ("all rows", r.test_all, r.all_rows_action),
        ):
            act = f"{p50(action):.1f}" if action else "-"
            if test is None:
                rows.append([human(r.n), label, act, NOT_BUILT, "-", "-"])
                continue
            extra = p50(test) - p50(action) if action else float("nan")
            target = verdict(p50(test), p50(action) + 20) if action and r.n >= 1_000_000 else "-"
            rows.append([human(r.n), label, act, p50_p99(test), f"{extra:+.1f}", target])
    parts += [
        "### PostgreSQL: reversibility test (`TestReversibility`, inverse strategy) vs the action itself",
        "",
        "The action itself: the same write's round trip under the transaction strategy.",
        "",
        table(
            [
                "rows",
                "write",
                "action itself p50 (ms)",
                "test p50 / p99 (ms)",
                "test - action p50 (ms)",
                "target on 1M: ≤ action + 20 ms",
            ],
            "llrrrl",
            rows,
        ),
        "",
    ]
    rows = []
    for r in pg:
        clone = r.strategies.get("clone")
        if clone is None:
            rows.append([human(r.n), NOT_BUILT, NOT_BUILT, "-"])
            continue
        target = verdict(p50(clone.prepare), 400) if r.n >= 1_000_000 else "-"
        rows.append([human(r.n), p50_p99(clone.prepare), p50_p99(clone.action), target])
    parts += [
        "### PostgreSQL: clone cost (clone strategy; goexd's own `timings.prepare` of the action)",
        "",
        table(["rows", "clone p50 / p99 (ms)", "whole action p50 / p99 (ms)", "target on 1M: ≤ 400 ms"], "lrrl", rows),
        "",
    ]

    # 3. baseline side by side
    rows = []
    for r in pg:
        base = [d + s for d, s in zip(r.dump, r.restore, strict=True)]
        tx = r.strategies.get("transaction")
        inv = r.strategies.get("inverse")
        cells = [
            human(r.n),
            f"{p50(r.dump):.0f}",
            f"{p50(r.restore):.0f}",
            f"{p50(base):.0f}",
            f"{p50(tx.action):.1f}" if tx else NOT_BUILT,
            ratio(p50(base) / p50(tx.action)) if tx else "-",
            f"{p50(inv.action):.1f}" if inv else NOT_BUILT,
            ratio(p50(base) / p50(inv.action)) if inv else "-",
        ]
        rows.append(cells)
    parts += [
        "### PostgreSQL: baseline (the prototype: dump + restore to test reversibility) side by side",
        "",
        f"Baseline: `pg_dump -Fc` of the database + `pg_restore` into a fresh database, p50 of "
        f"{len(pg[0].dump)} runs at {human(pg[0].n)}"
        + (f", {len(pg[-1].dump)} at {human(pg[-1].n)}" if len(pg) > 1 else "")
        + "; goexd: the small write's whole round trip (the inverse strategy's includes its reversibility test).",
        "",
        table(
            [
                "rows",
                "pg_dump p50 (ms)",
                "pg_restore p50 (ms)",
                "baseline dump + restore p50 (ms)",
                "goexd transaction action p50 (ms)",
                "speed-up",
                "goexd inverse action p50 (ms)",
                "speed-up",
            ],
            "lrrrrrrr",
            rows,
        ),
        "",
    ]

    # 4. SQLite
    rows = []
    for name, _ in STRATEGIES:
        runs = lite.get(name)
        if runs is None:
            rows.append([name, NOT_BUILT, NOT_BUILT, NOT_BUILT])
        else:
            rows.append([name, p50_p99(runs.action), f"{p50(runs.prepare):.1f}", p50_p99(runs.undo)])
    parts += [
        f"### SQLite: small write on a file of {human(lite_n)} rows, round trip and undo per strategy",
        "",
        PREPARE_NOTE,
        "",
        table(["strategy", "action p50 / p99 (ms)", "of which prepare p50 (ms)", "undo p50 / p99 (ms)"], "lrrr", rows),
        "",
    ]
    return "\n".join(parts)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="PostgreSQL table sizes")
    p.add_argument(
        "--reps", type=int, default=50, help="small-write rounds at 100k (fewer at 1M, half for inverse and clone)"
    )
    p.add_argument("--reps-all", type=int, default=3, help="rounds of the all-rows write and its test")
    p.add_argument("--reps-baseline", type=int, default=5, help="dump + restore runs at 100k (fewer at 1M)")
    p.add_argument("--sqlite-rows", type=int, default=100_000)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("db_results.md"))
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="goex-dbbench-") as tmp, run_pg_cluster() as cluster:
        root = Path(tmp)
        (root / "daemon").mkdir()
        daemon = DaemonProcess(root / "daemon")
        daemon.start()
        try:
            g = Goexd(daemon)
            info = secpb.SecretInfo(
                name=SECRET,
                kind=secpb.SECRET_KIND_DSN,
                allowed_hosts=[f"{cluster.host}:{cluster.port}"],
                injection=secpb.Injection(dsn_password=secpb.DsnPasswordInjection()),
            )
            g.secrets.PutSecret(secpb.PutSecretRequest(info=info, value=cluster.app_password.encode()))
            with cluster.connect() as conn:
                server = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
            pg = []
            for n in sizes:
                big = n >= 1_000_000
                reps = max(10, args.reps * 3 // 5) if big else args.reps
                base_reps = max(2, args.reps_baseline - 2) if big else args.reps_baseline
                pg.append(bench_postgres(g, cluster, n, reps, args.reps_all, base_reps))
            lite_path = root / "sqlite" / "app.db"
            lite_path.parent.mkdir()
            make_sqlite(lite_path, args.sqlite_rows)
            lite = bench_sqlite(
                g, lite_path, args.sqlite_rows, {"transaction": args.reps, "inverse": 15, "clone": args.reps // 2}
            )
        finally:
            daemon.stop()
    text = report(pg, lite, args.sqlite_rows, server, time.perf_counter() - started)
    publish(text, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
