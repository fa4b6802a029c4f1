"""`make bench`, planner part (issue 16): what planning a prompt adds to an action, model latency left out, and
how large the request is against the workspace's and the schema's size.

The endpoint is tests/services/scripted_llm.py answering at once with the plan (so the model's own latency,
recorded per answer by goexd, is ~1 ms and is subtracted anyway). Per round, in a fresh random order:

- action: the same action submitted directly (Client.submit, with the same inverse where the strategy takes one);
- prompt: Client.prompt, planned into that action: the request assembled from the resources' describe(), the
  answer checked (schema, precheck, check_inverse), then the same runner path (policy, the inverse's test);
  overhead = prompt - action - the model's latency.

Each action is undone after its round, untimed. Resources: a workspace of 1k files (versioned), a SQLite database
(inverse strategy: the inverse is tested in both), json-server (an http POST). Then the request's size (goexd's
token estimate, UTF-8 bytes / 3) for workspaces of 1k / 10k / 100k files and SQLite schemas of 10 / 100 / 300
tables, and how long a plan-only takes there. Targets: overhead <= 30 ms plus the reversibility test; request
<= 4k tokens at 100k files. Prints Markdown and writes bench/planner_results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import ms_since, pct, progress, publish, table
from run import make_workspace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for the test services: the scripted endpoint, json-server
import goex  # noqa: E402
from goexd.launcher import DaemonProcess  # noqa: E402
from tests.services.json_server import run_json_server  # noqa: E402
from tests.services.scripted_llm import ScriptedLLM  # noqa: E402

OUT = Path(__file__).with_name("planner_results.md")


def fs_answer(command: str) -> dict[str, object]:
    return {"action": {"resource": "fs", "description": "bench", "command": command}}


class Case:
    def __init__(self, name: str, body: goex.ActionBody, inverse: goex.ActionBody | None, answer: dict[str, object]):
        self.name, self.body, self.inverse, self.answer = name, body, inverse, answer
        self.action: list[float] = []
        self.overhead: list[float] = []
        self.model: list[float] = []


def run_round(client: goex.Client, llm: ScriptedLLM, session: str, case: Case, prompt: bool) -> None:
    t0 = time.perf_counter()
    if prompt:
        llm.reply(case.answer)
        done = client.prompt(session, "do it")
        took = ms_since(t0)
        assert done.plan is not None and done.state is goex.ActionState.EXECUTED, done.error
        model = done.plan.latency * 1000
        case.model.append(model)
        case.overhead.append(took - model)  # the action's own time is taken off below, by percentile
    else:
        done = client.submit(session, case.body, inverse=case.inverse)
        assert done.state is goex.ActionState.EXECUTED, done.error
        case.action.append(ms_since(t0))
    client.undo(session, done.id)


def overhead_table(cases: list[Case]) -> str:
    rows = []
    for c in cases:
        a50, a90 = pct(c.action, 0.5), pct(c.action, 0.9)
        p50, p90 = pct(c.overhead, 0.5), pct(c.overhead, 0.9)
        rows.append(
            [c.name, f"{a50:.1f} / {a90:.1f}", f"{p50:.1f} / {p90:.1f}", f"{p50 - a50:.1f}", f"{pct(c.model, 0.5):.1f}"]
        )
    header = [
        "action",
        "action alone p50 / p90 ms",
        "prompt, model excluded, p50 / p90 ms",
        "overhead p50 ms",
        "model ms",
    ]
    return table(header, "lrrrr", rows)


def request_sizes(client: goex.Client, llm: ScriptedLLM, root: Path, sizes: list[int], tables: list[int]) -> str:
    rows = []
    for n in sizes:
        ws = make_workspace(root / "req", n)
        session = client.create_session(fs=ws)
        llm.reply(fs_answer("true"))
        t0 = time.perf_counter()
        review = client.plan(session.id, "list the files")
        rows.append([f"workspace, {n} files", str(review.plan.request_tokens), f"{ms_since(t0):.0f}"])
        client.close_session(session.id)
    for t in tables:
        db = root / f"schema{t}.db"
        with sqlite3.connect(db) as conn:
            for i in range(t):
                conn.execute(f"CREATE TABLE t{i} (id INTEGER PRIMARY KEY, name TEXT, price INTEGER, note TEXT)")
                conn.execute(f"INSERT INTO t{i} (name, price, note) VALUES ('a', 1, 'x'), ('b', 2, 'y')")
        session = client.create_session(db=f"sqlite://{db}")
        llm.reply({"action": {"resource": "db", "description": "b", "sql": "SELECT 1"}})
        t0 = time.perf_counter()
        review = client.plan(session.id, "count the rows")
        rows.append([f"SQLite, {t} tables", str(review.plan.request_tokens), f"{ms_since(t0):.0f}"])
        client.close_session(session.id)
    return table(["session", "request tokens (estimate)", "plan-only ms"], "lrr", rows)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--tables", default="10,100,300")
    args = parser.parse_args()
    started = time.perf_counter()
    llm = ScriptedLLM().start()
    with tempfile.TemporaryDirectory(prefix="goex-planner-bench-", dir="/var/tmp") as tmp:
        root = Path(tmp)
        (root / "d").mkdir()
        d = DaemonProcess(
            root / "d",
            config_toml=f'journal_sync = "normal"\n[planner]\nbase_url = "{llm.base_url}"\nmode = "json_schema"\n',
            env={"GOEXD_EGRESS__ALLOWED_ADDRESSES": "127.0.0.1/32"},
        )
        d.start()
        try:
            with goex.Client(d.socket, timeout=600) as client, run_json_server(root / "js", {"items": []}) as js:
                ws = make_workspace(root / "fs", 1000)
                db = root / "shop.db"
                with sqlite3.connect(db) as conn:
                    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, balance INTEGER)")
                    conn.executemany(
                        "INSERT INTO users (name, balance) VALUES (?, 100)", [(f"u{i}",) for i in range(50)]
                    )
                up, down = "UPDATE users SET balance = balance + 500", "UPDATE users SET balance = balance - 500"
                body = json.dumps({"name": "lamp"})
                sessions = {
                    "fs": client.create_session(fs=ws).id,
                    "db": client.create_session(
                        resources=[goex.ResourceSpec.db(f"sqlite://{db}", strategy="inverse")]
                    ).id,
                    "http": client.create_session(resources=[goex.ResourceSpec.http(js.base_url, name="api")]).id,
                }
                fs_cmd = "echo x >> d0/f0.txt"
                db_answer = {"action": {"resource": "db", "description": "b", "sql": up, "inverse_sql": down}}
                http_answer = {
                    "action": {"resource": "api", "description": "b", "method": "POST", "path": "/items", "body": body}
                }
                cases = {
                    "fs": Case("shell, 1k-file workspace (versioned)", goex.Shell(["sh", "-c", fs_cmd]), None,
                               fs_answer(fs_cmd)),
                    "db": Case("SQL, SQLite (inverse: tested in both)", goex.Sql(up), goex.Sql(down), db_answer),
                    "http": Case("http POST, json-server", goex.Http("POST", "/items", json=body), None, http_answer),
                }  # fmt: skip
                for key, case in cases.items():  # warm-up: the probe, first connections, first snapshots
                    run_round(client, llm, sessions[key], case, True)
                    run_round(client, llm, sessions[key], case, False)
                    case.action.clear(), case.overhead.clear(), case.model.clear()
                for r in range(args.rounds):
                    plan: list[Callable[[], None]] = []
                    for key, case in cases.items():
                        for prompt in (True, False):
                            plan.append(lambda k=key, c=case, p=prompt: run_round(client, llm, sessions[k], c, p))
                    random.shuffle(plan)
                    for step in plan:
                        step()
                    if r % 10 == 9:
                        progress(f"round {r + 1}/{args.rounds}")
                for sid in sessions.values():
                    client.close_session(sid)
                sizes = [int(s) for s in args.sizes.split(",") if s]
                tables = [int(t) for t in args.tables.split(",") if t]
                sizes_table = request_sizes(client, llm, root, sizes, tables)
        finally:
            d.stop()
            llm.stop()
    load = os.getloadavg()[0]
    text = (
        "## Planner overhead (bench/planner_bench.py)\n\n"
        f"{args.rounds} rounds, interleaved in random order; load average {load:.1f} at the end. The model is a "
        "scripted endpoint answering at once; its latency (as goexd recorded it) is taken off.\n\n"
        + overhead_table(list(cases.values()))
        + "\n\nRequest size (goexd's estimate: UTF-8 bytes / 3) and a plan-only's time, by what the session holds:\n\n"
        + sizes_table
        + "\n"
    )
    publish(text, OUT, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
