"""Verdicts remembered per (action, inverse) pair and a person's judgements of them, through a real goexd:
SQLite and PostgreSQL (inverse strategy), a workspace (bwrap trials) and an http resource with a client
inverse (json-server). The same pair on the same state reuses its verdict and says so (with the time of
the real test); any change to what the fingerprint covers makes it tested again; a pair marked
wrong is refused even though its test passes; one marked right is still tested; judgements
survive a kill -9 of goexd."""

from __future__ import annotations

import json
import re
import sqlite3
from functools import partial
from pathlib import Path

import grpc

from goex.v1 import actions_pb2 as apb
from goex.v1 import sessions_pb2 as sepb
from goex.v1 import types_pb2 as pb
from tests.corpus import fs_cases
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import status_of
from tests.e2e.test_cli_sql import goex as goex_cli
from tests.e2e.test_postgres_e2e import pg  # noqa: F401 - a fixture: the cluster's DSN, its secret put
from tests.fs_fingerprint import fingerprint
from tests.services.json_server import run_json_server
from tests.services.postgres import PgCluster

FORWARD = "UPDATE items SET price = price + 1 WHERE id = 1"
RIGHT = "UPDATE items SET price = price - 1 WHERE id = 1"


def sql(text: str) -> pb.ActionSpec:
    return pb.ActionSpec(sql=pb.SqlAction(sql=text))


def shell(text: str) -> pb.ActionSpec:
    return pb.ActionSpec(shell=pb.ShellAction(argv=["sh", "-c", text]))


def _sqlite_session(d: DaemonProcess, path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, price INTEGER); INSERT INTO items VALUES (1, 10)"
        )
    spec = pb.ResourceSpec(db=pb.DbResourceSpec(url=f"sqlite://{path}"), strategy=pb.UNDO_STRATEGY_INVERSE)
    return str(d.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session.id)


def _test(d: DaemonProcess, session_id: str, spec: pb.ActionSpec, inverse: pb.ActionSpec) -> pb.Reversibility:
    req = apb.TestReversibilityRequest(session_id=session_id, spec=spec, inverse=inverse)
    return d.actions.TestReversibility(req).reversibility


def _submit(d: DaemonProcess, session_id: str, spec: pb.ActionSpec, inverse: pb.ActionSpec) -> pb.Action:
    return d.actions.SubmitAction(apb.SubmitActionRequest(session_id=session_id, spec=spec, inverse=inverse)).action


def _judge(d: DaemonProcess, action_id: str, judgement: int, note: str = "") -> apb.PairHistory:
    req = apb.JudgePairRequest(action_id=action_id, judgement=judgement, who="ann", note=note)  # type: ignore[arg-type]
    return d.actions.JudgePair(req).history


def test_sqlite_pair_reused_on_the_same_state_and_judged(daemon: DaemonProcess, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    sid = _sqlite_session(daemon, path)

    first = _test(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert first.verdict == pb.VERDICT_PASSED and "reused" not in first.detail, first.detail
    # Layout and keyword case normalised away: the same pair, on the same state.
    again = _test(daemon, sid, sql("update items\n  set price = price + 1 where id = 1;"), sql(RIGHT))
    assert again.verdict == pb.VERDICT_PASSED and again.detail.startswith("reused: passed when TestReversibility")
    assert "the whole database's fingerprint" in again.detail, again.detail
    assert again.tested_at == first.tested_at  # the time of the real test, never presented as new
    # A string literal is not layout: another pair, tested afresh.
    other = _test(daemon, sid, sql("UPDATE items SET price = length('a  b') WHERE id = 1"), sql(RIGHT))
    assert "reused" not in other.detail and other.verdict == pb.VERDICT_FAILED, other.detail

    # A wrong inverse: failed, remembered as failed (blocked without trying it again).
    wrong = sql("UPDATE items SET price = price - 2 WHERE id = 1")
    assert _test(daemon, sid, sql(FORWARD), wrong).verdict == pb.VERDICT_FAILED
    blocked = _submit(daemon, sid, sql(FORWARD), wrong)
    assert blocked.state == pb.ACTION_STATE_BLOCKED and "reused: failed" in blocked.error, blocked.error

    # The right pair runs on the remembered verdict, and says so in its record.
    done = _submit(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert done.state == pb.ACTION_STATE_EXECUTED and done.reversibility.verdict == pb.VERDICT_PASSED
    assert done.reversibility.detail.startswith("reused: passed"), done.reversibility.detail
    # Now the database differs (price 11): the pair is tried again, never reused.
    fresh = _test(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert fresh.verdict == pb.VERDICT_PASSED and "reused" not in fresh.detail, fresh.detail
    [undone] = daemon.actions.UndoAction(apb.UndoActionRequest(session_id=sid, action_id=done.id)).undone
    assert undone.reversibility.verdict == pb.VERDICT_PASSED  # undo verified

    # A person marks the pair wrong: refused next time though its test passes, with who and why.
    history = _judge(daemon, done.id, apb.JUDGEMENT_WRONG, "it must also log the change")
    assert [j.judgement for j in history.judgements] == [apb.JUDGEMENT_WRONG]
    assert [j.who for j in history.judgements] == ["ann"] and history.judgements[0].action_id == done.id
    assert len(history.verdicts) >= 2 and all(v.tested_by for v in history.verdicts)
    test = _test(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert test.verdict == pb.VERDICT_FAILED and "a person marked this pair wrong (ann" in test.detail, test.detail
    assert "it must also log the change" in test.detail and "untold, it is passed" in test.detail
    refused = _submit(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert refused.state == pb.ACTION_STATE_BLOCKED and "marked this pair wrong" in refused.error
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT price FROM items").fetchall() == [(10,)]  # nothing ran

    # Marked right later: the latest judgement holds; the pair is still tested (its verdict decides).
    _judge(daemon, done.id, apb.JUDGEMENT_RIGHT)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE items SET price = 12")  # another state: a real test, not a reuse
    right = _test(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert right.verdict == pb.VERDICT_PASSED and "reused" not in right.detail, right.detail
    assert "a person marked this pair right (ann" in right.detail and "never skips its test" in right.detail
    # "right" does not pass a pair its test fails: a wrong inverse judged right stays failed.
    bad = _submit(daemon, sid, sql(FORWARD), wrong)
    _judge(daemon, bad.id, apb.JUDGEMENT_RIGHT)
    assert _test(daemon, sid, sql(FORWARD), wrong).verdict == pb.VERDICT_FAILED

    # Kept across a crash of goexd.
    daemon.kill()
    daemon.start()
    kept = daemon.actions.GetPairHistory(apb.GetPairHistoryRequest(action_id=done.id)).history
    assert [j.judgement for j in kept.judgements] == [apb.JUDGEMENT_WRONG, apb.JUDGEMENT_RIGHT]
    assert [v.reversibility.verdict for v in kept.verdicts][:1] == [pb.VERDICT_PASSED]


def test_bad_judgements_change_nothing(daemon: DaemonProcess, tmp_path: Path) -> None:
    sid = _sqlite_session(daemon, tmp_path / "app.db")
    read = _submit(daemon, sid, sql("SELECT 1"), sql("SELECT 1"))
    cases = [
        (
            apb.JudgePairRequest(action_id="", judgement=apb.JUDGEMENT_WRONG),
            grpc.StatusCode.INVALID_ARGUMENT,
            "action_id",
        ),
        (apb.JudgePairRequest(action_id=read.id), grpc.StatusCode.INVALID_ARGUMENT, "judgement"),
        (
            apb.JudgePairRequest(action_id=read.id, judgement=apb.JUDGEMENT_WRONG, note="x" * 2001),
            grpc.StatusCode.INVALID_ARGUMENT,
            "note",
        ),
        (
            apb.JudgePairRequest(action_id="act_0000000000000000", judgement=apb.JUDGEMENT_WRONG),
            grpc.StatusCode.NOT_FOUND,
            "act_0000000000000000",
        ),
    ]
    for req, code, named in cases:
        got, message = status_of(lambda req=req: daemon.actions.JudgePair(req))
        assert got == code and named in message, message
    history = daemon.actions.GetPairHistory(apb.GetPairHistoryRequest(action_id=read.id)).history
    assert list(history.judgements) == []
    # An action with no inverse (its undo needs none) has no pair to judge.
    ws = tmp_path / "ws"
    ws.mkdir()
    fs = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)))
    fs_sid = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[fs])).session.id
    plain = daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=fs_sid, spec=shell("echo x > f"))).action
    got, message = status_of(lambda: _judge(daemon, plain.id, apb.JUDGEMENT_WRONG))
    assert got == grpc.StatusCode.FAILED_PRECONDITION and "no inverse" in message, message


def test_workspace_pair_reused_until_the_tree_changes(daemon: DaemonProcess, tmp_path: Path) -> None:
    ws = tmp_path / "projects" / "ws"
    ws.mkdir(parents=True)
    fs_cases.seed(ws)
    spec = pb.ResourceSpec(fs=pb.FsResourceSpec(path=str(ws)), strategy=pb.UNDO_STRATEGY_INVERSE)
    sid = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session.id
    action, inverse = shell("chmod 600 a.txt"), shell("chmod 644 a.txt")
    first = _test(daemon, sid, action, inverse)
    assert first.verdict == pb.VERDICT_PASSED and "reused" not in first.detail
    again = _test(daemon, sid, action, inverse)
    assert again.detail.startswith("reused: passed") and "the workspace's snapshot" in again.detail, again.detail
    before = fingerprint(ws)
    (ws / "elsewhere.txt").write_text("a person's edit\n")  # anywhere in the tree: the snapshot changes
    third = _test(daemon, sid, action, inverse)
    assert third.verdict == pb.VERDICT_PASSED and "reused" not in third.detail, third.detail
    # Judged wrong: refused at submit (the default policy refuses a failed file inverse), the tree untouched.
    done = _submit(daemon, sid, action, inverse)
    assert done.state == pb.ACTION_STATE_EXECUTED
    daemon.actions.UndoAction(apb.UndoActionRequest(session_id=sid, action_id=done.id))
    _judge(daemon, done.id, apb.JUDGEMENT_WRONG, "the mode is not the point")
    now = fingerprint(ws)
    blocked = _submit(daemon, sid, action, inverse)
    assert blocked.state == pb.ACTION_STATE_BLOCKED and "marked this pair wrong" in blocked.error, blocked.error
    assert fingerprint(ws) == now != before


def test_http_client_inverse_judged_wrong_is_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    # No staging copy: the pair cannot be tried, so nothing would stop it but the person's judgement.
    with run_json_server(tmp_path / "svc", {"items": [{"id": 1, "name": "lamp"}]}) as server:
        res = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=server.base_url))
        sid = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[res])).session.id
        action = pb.ActionSpec(http=pb.HttpAction(method="POST", path="/items", json=json.dumps({"name": "chair"})))
        inverse = pb.ActionSpec(http=pb.HttpAction(method="DELETE", path="/items/1"))  # the wrong id
        unknown = _test(daemon, sid, action, inverse)
        assert unknown.verdict == pb.VERDICT_UNKNOWN, unknown.detail
        done = _submit(daemon, sid, action, inverse)
        assert done.state == pb.ACTION_STATE_EXECUTED, done.error
        [undone] = daemon.actions.UndoAction(apb.UndoActionRequest(session_id=sid, action_id=done.id)).undone
        assert undone.reversibility.verdict == pb.VERDICT_FAILED  # not verified: the item it made is still there
        _judge(daemon, done.id, apb.JUDGEMENT_WRONG, "deletes lamp, not the new chair")
        items_before = server.db()["items"]
        refused = _submit(daemon, sid, action, inverse)
        assert refused.state == pb.ACTION_STATE_BLOCKED and "marked this pair wrong" in refused.error, refused.error
        assert server.db()["items"] == items_before  # never sent
        still = _test(daemon, sid, action, inverse)
        assert still.verdict == pb.VERDICT_FAILED and "untold, it is unknown" in still.detail, still.detail


def test_http_json_client_inverse_judged_wrong_is_refused(daemon: DaemonProcess, tmp_path: Path) -> None:
    # A JSON inverse is recorded with the Content-Type it is sent with; the judgement made on that record must still
    # hold for the pair as a client submits it again (trial 2, judge2.sh: it ran again "reversible, untested").
    with run_json_server(tmp_path / "svc", {"items": [{"id": 1, "name": "lamp", "price": 100}]}) as server:
        res = pb.ResourceSpec(name="api", http=pb.HttpResourceSpec(base_url=server.base_url))
        sid = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[res])).session.id

        def patch(body: str) -> pb.ActionSpec:
            return pb.ActionSpec(http=pb.HttpAction(method="PATCH", path="/items/1", json=body))

        done = _submit(daemon, sid, patch('{"price":95}'), patch('{"price":100}'))
        assert done.state == pb.ACTION_STATE_EXECUTED, done.error
        daemon.actions.UndoAction(apb.UndoActionRequest(session_id=sid, action_id=done.id))
        _judge(daemon, done.id, apb.JUDGEMENT_WRONG, "must restore via PUT")
        items_before = server.db()["items"]
        refused = _submit(daemon, sid, patch('{"price": 95}'), patch('{ "price" : 100 }'))
        assert refused.state == pb.ACTION_STATE_BLOCKED, (refused.state, refused.reversibility.detail)
        assert "marked this pair wrong" in refused.error and "must restore via PUT" in refused.error, refused.error
        assert server.db()["items"] == items_before  # never sent


def test_judge_log_and_show_from_the_cli(daemon: DaemonProcess, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.executescript("CREATE TABLE items (id INTEGER PRIMARY KEY, price INT); INSERT INTO items VALUES (1, 10)")
    cli = partial(goex_cli, daemon, tmp_path)
    cli("session", "open", "--db", f"sqlite://{db}", "--db-strategy", "inverse")
    out = cli("sql", FORWARD, "--inverse", RIGHT)
    action_id = re.search(r"act_[0-9a-f]{16}", out)
    assert action_id is not None, out
    cli("undo")
    cli("sql", FORWARD, "--inverse", RIGHT)  # the same pair on the same state: its verdict reused
    assert "marked the pair of" in cli("judge", action_id[0], "wrong", "--note", "logs nothing", "--who", "ann")
    cli("sql", FORWARD, "--inverse", RIGHT, code=125)  # refused: judged wrong
    log = cli("log").splitlines()
    assert log[0].split()[-2:] == ["VERDICT", "WHAT"], log
    verdicts = [re.search(r"(undo verified|passed \(reused\)|failed \(judged wrong\))", row) for row in log[1:]]
    assert [v[1] if v else None for v in verdicts] == ["undo verified", "passed (reused)", "failed (judged wrong)"]
    shown = cli("show", action_id[0])
    assert re.search(r"^pair test +passed by the test before action act_\w+ at .* on the whole database", shown, re.M)
    assert re.search(rf"^judged +marked wrong by ann at .* \(on {action_id[0]}\): logs nothing$", shown, re.M), shown
    assert "--judgement" not in cli("judge", "--help")  # positional: right | wrong
    assert "invalid choice" in cli("judge", action_id[0], "maybe", code=2)


def test_postgres_pairs_are_tested_every_time_and_judgements_hold(
    daemon: DaemonProcess,
    pg: tuple[str, PgCluster],  # noqa: F811 - the fixture imported above
    pg_database: str,
) -> None:
    """No fingerprint of PostgreSQL is cheap enough to reuse a verdict by: each test is a real one, kept as
    history; a judgement still holds."""
    dsn, pg_cluster = pg  # its secret "pgpass" is in the daemon's vault
    with pg_cluster.connect_app(pg_database) as conn:
        conn.execute("CREATE TABLE items (id integer PRIMARY KEY, price integer); INSERT INTO items VALUES (1, 10)")
    db = pb.DbResourceSpec(url=dsn, secret="pgpass")
    spec = pb.ResourceSpec(db=db, strategy=pb.UNDO_STRATEGY_INVERSE)
    sid = daemon.sessions.CreateSession(sepb.CreateSessionRequest(resources=[spec])).session.id
    tested = [_test(daemon, sid, sql(FORWARD), sql(RIGHT)) for _ in range(2)]
    assert [t.verdict for t in tested] == [pb.VERDICT_PASSED] * 2
    assert not any("reused" in t.detail for t in tested) and tested[0].tested_at != tested[1].tested_at
    done = _submit(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert done.state == pb.ACTION_STATE_EXECUTED and "reused" not in done.reversibility.detail
    [undone] = daemon.actions.UndoAction(apb.UndoActionRequest(session_id=sid, action_id=done.id)).undone
    assert undone.reversibility.verdict == pb.VERDICT_PASSED
    history = _judge(daemon, done.id, apb.JUDGEMENT_WRONG, "prices are audited")
    assert len(history.verdicts) == 3 and {v.fingerprint for v in history.verdicts} == {""}
    refused = _submit(daemon, sid, sql(FORWARD), sql(RIGHT))
    assert refused.state == pb.ACTION_STATE_BLOCKED and "prices are audited" in refused.error, refused.error
    with pg_cluster.connect_app(pg_database) as conn:
        assert conn.execute("SELECT price FROM items").fetchall() == [(10,)]
