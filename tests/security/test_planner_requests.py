"""What reaches the model: never a secret's value, a DSN's password, the vault's path or its key file.

Every request the planner sends is captured by the endpoint it is sent to (tests/services/scripted_llm.py, a real
HTTP server; scripted because the answers must be ones that make goexd send its retry and its function call, which
a real model cannot be made to give), in every mode: chat completion by structured output, by tool call and by
JSON in words, functions mode, plan-only, a refused answer asked again, goexd as root and as an unprivileged user.
The session holds what a leak would come from: a PostgreSQL database whose DSN secret is a password, an http
resource with a bearer token, a SQLite table and a file name holding a vault value, an earlier action that pasted
one, and the prompt itself quoting one. Each request's body and headers are searched for every value in raw,
base64, hex, URL-encoded and JSON-escaped form (the redactor's own list of forms); the Authorization header carries
exactly the endpoint's own API key, and only to that endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

import goex
from goexd.vault.redact import forms_of
from tests.daemon_process import LOOPBACK, DaemonProcess
from tests.security.conftest import make_workspace, start_daemon
from tests.services.json_server import JsonServer
from tests.services.postgres import PgCluster
from tests.services.scripted_llm import Recorded, ScriptedLLM, scripted_endpoint

ITEMS_SET = """
name = "items"
[[function]]
name = "create_item"
description = "Create an item"
parameters = { type = "object", properties = { name = { type = "string" } }, required = ["name"] }
http = { method = "POST", path = "/items", json = { name = "{name}" } }
"""

# (goexd as, [planner] mode): every transport once as root, the probed one as the unprivileged user too.
CASES = [("root", "auto"), ("root", "tools"), ("root", "json"), ("user", "auto")]


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    yield from scripted_endpoint()


@contextlib.contextmanager
def planner_daemon(mode: str, planner_mode: str, llm: ScriptedLLM, functions: Path) -> Iterator[DaemonProcess]:
    config = (
        f'[planner]\nbase_url = "{llm.base_url}"\nmode = "{planner_mode}"\napi_key_secret = "llm-key"\n'
        f'retries = 1\ntimeout_s = 10\nfunctions_dirs = ["{functions}"]\n'
    )
    with start_daemon(mode, config, allowed_addresses=LOOPBACK) as d:
        yield d


@contextlib.contextmanager
def _items_set(functions: Path) -> Iterator[None]:
    (functions / "items.toml").write_text(ITEMS_SET)
    (functions / "items.toml").chmod(0o644)
    yield


def _put(client: goex.Client, name: str, value: str, host: str) -> None:
    client.put_secret(name, value.encode(), kind="bearer", allowed_hosts=[host])


def _leaks(rec: Recorded, values: dict[str, str]) -> list[str]:
    """The values (by name) that occur in any form in the request's body or its headers but Authorization."""
    data = rec.body + b"\n" + b"\n".join(f"{k}: {v}".encode() for k, v in rec.headers.items() if k != "authorization")
    found = []
    for name, value in values.items():
        raw = value.encode()
        forms = forms_of(raw) | {raw, base64.b64encode(raw), raw.hex().encode(), quote(value, safe="").encode()}
        if any(f in data for f in forms):
            found.append(name)
    return found


@pytest.mark.parametrize(("mode", "planner_mode"), CASES)
def test_no_secret_reaches_the_model(
    mode: str,
    planner_mode: str,
    llm: ScriptedLLM,
    json_server: JsonServer,
    pg_cluster: PgCluster,
    pg_database: str,
) -> None:
    with (
        make_workspace(0, 0) as functions,
        _items_set(functions),  # readable by the unprivileged user too
        planner_daemon(mode, planner_mode, llm, functions) as d,
        make_workspace(d.uid, d.gid) as ws,
        make_workspace(d.uid, d.gid) as db_dir,
    ):
        client = goex.Client(d.socket, timeout=120)
        llm_key = "llmkey-" + secrets.token_urlsafe(24)
        api_token = "tok-" + secrets.token_urlsafe(24)
        other = "other-" + secrets.token_urlsafe(24)
        _put(client, "llm-key", llm_key, f"http://127.0.0.1:{llm.port}")
        _put(client, "api-token", api_token, f"http://{json_server.host}")
        _put(client, "other", other, "example.com")
        client.put_secret(
            "pg",
            pg_cluster.app_password.encode(),
            kind="dsn",
            injection=goex.Injection.dsn_password(),
            allowed_hosts=[f"{pg_cluster.host}:{pg_cluster.port}"],
        )
        # Where values could come from: a table row, a file name, an earlier action's command, the prompt.
        db_path = db_dir / "shop.db"
        with sqlite3.connect(db_path) as db:
            db.execute("CREATE TABLE notes (body TEXT)")
            db.execute("INSERT INTO notes VALUES (?)", (f"the token is {api_token}",))
        os.chown(db_path, d.uid, d.gid)
        (ws / f"{other}.txt").write_text("x")
        os.chown(ws / f"{other}.txt", d.uid, d.gid)
        session = client.create_session(
            resources=[
                goex.ResourceSpec.fs(ws),
                goex.ResourceSpec.db(f"sqlite:///{db_path}", name="shop"),
                goex.ResourceSpec.db(pg_cluster.app_dsn_for(pg_database), secret="pg", name="pg"),
                goex.ResourceSpec.http(json_server.base_url, secret="api-token", name="api"),
            ]
        )
        client.submit(session.id, goex.Shell(["sh", "-c", f": pasted {api_token}"]), resource="fs")
        first = len(llm.requests)
        fs_answer = {"action": {"resource": "fs", "description": "d", "command": "touch made.txt"}}
        if planner_mode == "tools":
            llm.reply_tool("plan", {"action": {"resource": "fs", "description": "d"}})  # refused: asked again
            llm.reply_tool("plan", fs_answer)
        else:
            llm.reply_text("not json")  # refused: asked again, with why
            llm.reply(fs_answer)
        done = client.prompt(session.id, f"make a file; the token {api_token} is not for you", resource="fs")
        assert done.state is goex.ActionState.EXECUTED, done.error
        assert done.plan is not None and len(done.plan.attempts) == 2
        if planner_mode == "tools":
            llm.reply_tool("plan", fs_answer)
        else:
            llm.reply(fs_answer)
        review = client.plan(session.id, "make a file")
        assert review.action is not None
        if planner_mode == "tools" or planner_mode == "auto":
            llm.reply_tool("create_item", {"name": "lamp"})
        else:
            llm.reply({"function": "create_item", "arguments": {"name": "lamp"}})
        called = client.prompt(session.id, "add a lamp", functions="items", resource="api")
        assert called.state is goex.ActionState.EXECUTED, called.error
        assert not llm.script
        sent = llm.requests[first:]
        # Every mode was exercised: each chat request asked as the mode says.
        chats = [r.json for r in llm.chats() if r in sent]
        assert len(chats) == 4, [r.path for r in sent]
        if planner_mode == "json":
            assert all(c["response_format"] == {"type": "json_object"} for c in chats)
        elif planner_mode == "tools":
            assert all("tools" in c for c in chats)
        else:
            assert chats[0]["response_format"]["type"] == "json_schema" and "tools" in chats[-1]
        assert "[secret:api-token]" in chats[0]["messages"][0]["content"]  # the row and the pasted command: redacted
        assert "[secret:api-token]" in chats[0]["messages"][1]["content"]  # the prompt
        values = {
            "llm-key": llm_key,
            "api-token": api_token,
            "other": other,
            "pg password": pg_cluster.app_password,
            "vault path": str(d.state_dir / "vault.bin"),
            "key file": str(d.state_dir / "vault.key"),
            "pg dsn with password": pg_cluster.app_dsn_for(pg_database, with_password=True),
        }
        for rec in sent:
            assert _leaks(rec, values) == [], rec
            assert rec.headers.get("authorization") == f"Bearer {llm_key}"
        assert "api-token" in chats[0]["messages"][0]["content"]  # its name is told; never its value
        client.close()
