"""`goex http` and `goex session open --http` against a real goexd and a real REST service
(json-server), as a user types them; then the same calls through `goex.Client.run_http`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import goex
from tests.daemon_process import DaemonProcess
from tests.e2e.test_cli_sql import goex as goex_cli
from tests.services.json_server import JsonServer


def items(server: JsonServer) -> list[dict[str, object]]:
    """What the service holds now, asked over HTTP (its db file is written a moment after each change)."""
    with server.client() as http:
        got: list[dict[str, object]] = http.get("/items").raise_for_status().json()
        return got


def test_create_undo_and_read_from_the_cli(
    shared_daemon: DaemonProcess, json_server: JsonServer, tmp_path: Path
) -> None:
    def cli(*argv: str, code: int = 0) -> str:
        return goex_cli(shared_daemon, tmp_path, *argv, code=code)

    cli("session", "open", "--http", f"items={json_server.base_url}")
    created = cli("http", "POST", "/items", "--json", '{"name": "x"}', "-m", "add x")
    assert created.startswith("201 Created\n"), created
    assert re.search(r"^location\s+\S*/items/1$", created, re.M), created  # the headers table
    assert '  "name": "x",\n  "id": 1\n' in created  # the body, pretty-printed
    assert re.search(r"^reversibility\s+reversible, untested: ", created, re.M), created
    assert re.search(r"^inverse\s+DELETE /items/1$", created, re.M), created
    action_id = re.search(r"^action (\S+): executed, HTTP 201, ", created, re.M)
    assert action_id is not None, created
    assert items(json_server) == [{"name": "x", "id": 1}]

    log = cli("log")
    assert re.search(r"\bhttp\s+executed\b.*add x: POST /items$", log, re.M), log
    shown = cli("show", action_id[1])
    assert re.search(r"^status\s+201 Created$", shown, re.M) and re.search(r"^inverse\s+DELETE /items/1$", shown, re.M)

    undone = cli("undo")  # one line per action on stdout, then how goexd checked the undo (stderr)
    assert undone.startswith(f"undone {action_id[1]} (seq 1)  POST /items\n"), undone
    assert "  verified: inverse DELETE /items/1 answered 200; GET /items/1 answered 404 (gone" in undone, undone
    assert items(json_server) == []
    gone = cli("http", "GET", "/items/1", code=125)
    assert gone.startswith("404 Not Found\n") and "failed, HTTP 404" in gone, gone

    listed = cli("http", "GET", "/items", "--resource", "items")
    assert listed.startswith("200 OK\n") and re.search(r"^reversibility\s+read_only, ", listed, re.M), listed
    assert not re.search(r"^inverse", listed, re.M)
    assert re.search(r"^action \S+: committed, HTTP 200, ", listed, re.M), listed  # a read: resolved at once
    # --json before the command: the SubmitAction response; -q: the body alone, as the service sent it.
    response = json.loads(cli("--json", "http", "POST", "/items", "--json", '{"name": "y"}'))
    assert response["action"]["http"]["status"] == 201 and response["action"]["inverse"]["http"]["method"] == "DELETE"
    assert response["action"]["reversibility"]["reversibility_class"] == "reversible"
    assert [i["name"] for i in json.loads(cli("http", "GET", "/items", "-q", "--query", "name=y"))] == ["y"]
    assert json.loads(cli("http", "GET", "/items", "-q", "--query", "name=x")) == []
    cli("commit")
    assert [i["name"] for i in items(json_server)] == ["y"]


def test_bad_calls_are_refused_before_anything_is_sent(
    shared_daemon: DaemonProcess, json_server: JsonServer, tmp_path: Path
) -> None:
    def cli(*argv: str, code: int = 0) -> str:
        return goex_cli(shared_daemon, tmp_path, *argv, code=code)

    cli("session", "open", "--http", json_server.base_url)  # a bare URL: the default name
    error = json.loads(cli("--json", "http", "POST", "/items", "--json", "{bad", code=1))["error"]
    assert error["code"] == "invalid_argument" and "json" in error["message"], error
    assert cli("http", "POST", "/items", "--json", "{bad", code=1).startswith("error: ")
    for path in ("/../x", "//evil.test/x"):
        refused = json.loads(cli("--json", "http", "GET", path, code=1))["error"]
        assert refused["code"] == "invalid_argument" and "outside" in refused["message"], (path, refused)
    # Flags that do not go together never reach goexd.
    usage = cli("http", "POST", "/items", "--json", "{}", "--body", "x", code=2)
    assert "give one request body" in usage
    assert "no actions" in cli("log")
    assert items(json_server) == []


def test_confine_strategy_needs_an_approval_and_cannot_be_undone(
    shared_daemon: DaemonProcess, json_server: JsonServer, tmp_path: Path
) -> None:
    def cli(*argv: str, code: int = 0) -> str:
        return goex_cli(shared_daemon, tmp_path, *argv, code=code)

    sid = cli("session", "open", "--http", f"api={json_server.base_url}", "--http-strategy", "confine").strip()
    shown = cli("session", "show")
    assert re.search(r"^resource api\s+http \S+ \(undo: confine, rules: rest\)$", shown, re.M), shown
    refused = json.loads(cli("--json", "http", "POST", "/items", "--json", '{"name": "z"}', code=1))["error"]
    assert refused["code"] == "permission_denied" and "approval" in refused["message"], refused
    assert items(json_server) == []
    sent = cli("http", "POST", "/items", "--json", '{"name": "z"}', "--approve", "ann: add z")
    assert sent.startswith("201 Created\n") and re.search(r"^reversibility\s+irreversible, ", sent, re.M), sent
    assert re.search(r"^approval\s+ann: add z$", sent, re.M), sent
    approved = re.search(r"^action (\S+): executed, ", sent, re.M)
    assert approved is not None and re.search(r"^approval\s+ann: add z$", cli("show", approved[1]), re.M)
    assert "ann: add z" in cli("--json", "log")
    assert re.search(r"\bhttp\s+blocked\b.*POST /items  \(blocked by http\.irreversible\)$", cli("log"), re.M)
    assert re.search(r"\bhttp\s+executed\b.*POST /items  \(approved: ann: add z\)$", cli("log"), re.M)
    assert "irreversible" in cli("undo", code=1)
    assert [i["name"] for i in items(json_server)] == ["z"]

    # The same through the Python client: run_http sends json as a value, and the approval.
    with goex.Client(shared_daemon.socket) as client:
        [resource] = client.get_session(sid).resources
        assert (resource.name, resource.strategy, resource.rules) == ("api", goex.UndoStrategy.CONFINE, "rest")
        with_approval = client.run_http(sid, "post", "/items", json={"name": "w", "n": [1, 2]}, approval="ann: ok")
        assert with_approval.state is goex.ActionState.EXECUTED and with_approval.approval == "ann: ok"
        assert with_approval.http is not None and with_approval.http.status == 201
        assert with_approval.spec is not None and with_approval.spec.text == "POST /items"
        with pytest.raises(goex.PermissionDenied, match="approval"):
            client.run_http(sid, "DELETE", "/items/1")
    assert [i["name"] for i in items(json_server)] == ["z", "w"]
    assert items(json_server)[1]["n"] == [1, 2]


def test_run_http_undoes_from_the_recorded_response(shared_daemon: DaemonProcess, json_server: JsonServer) -> None:
    with goex.Client(shared_daemon.socket) as client:
        session = client.create_session(resources=[goex.ResourceSpec.http(json_server.base_url, name="items")])
        created = client.run_http(session.id, "POST", "/items", json='{"name": "v"}', headers={"Accept": "*/*"})
        assert created.http is not None and created.http.status == 201, created.error
        assert created.inverse is not None and created.inverse.text == "DELETE /items/1"
        assert created.reversibility is not None
        assert created.reversibility.reversibility_class is goex.ReversibilityClass.REVERSIBLE
        assert items(json_server) == [{"name": "v", "id": 1}]
        [undone] = client.undo(session.id)
        assert undone.state is goex.ActionState.UNDONE and items(json_server) == []
        read = client.run_http(session.id, "GET", "/items", query={"name": "v"})
        assert read.http is not None and read.http.status == 200 and json.loads(read.http.body) == []
        assert read.spec is not None and read.spec.text == "GET /items?name=v"


def test_an_inverse_given_on_the_command_line_is_the_one_undo_sends(
    shared_daemon: DaemonProcess, json_server: JsonServer, tmp_path: Path
) -> None:
    def cli(*argv: str, code: int = 0) -> str:
        return goex_cli(shared_daemon, tmp_path, *argv, code=code)

    cli("session", "open", "--http", f"items={json_server.base_url}")
    cli("http", "POST", "/items", "--json", '{"name": "x", "n": 1}')
    cli("commit")
    # goexd would derive a PUT of the captured item; the caller's PATCH takes precedence.
    patched = cli(
        "http", "PATCH", "/items/1", "--json", '{"n": 2}',
        "--inverse-method", "patch", "--inverse-path", "/items/1", "--inverse-json", '{"n": 1}',
    )  # fmt: skip
    assert re.search(r"^inverse\s+PATCH /items/1$", patched, re.M), patched
    assert items(json_server) == [{"name": "x", "n": 2, "id": 1}]
    cli("undo")
    assert items(json_server) == [{"name": "x", "n": 1, "id": 1}]


# A rule set whose creates are deleted but never checked (the HTTP corpus's, tests/corpus/rules/).
UNCHECKED_RULES = Path(__file__).resolve().parents[1] / "corpus" / "rules"


def test_an_undo_goexd_cannot_verify_is_unverified_and_exits_4(json_server: JsonServer, tmp_path: Path) -> None:
    (tmp_path / "goexd").mkdir()
    daemon = DaemonProcess(tmp_path / "goexd", env={"GOEXD_HTTP__RULES_DIRS": str(UNCHECKED_RULES)}).start()
    try:

        def cli(*argv: str, code: int = 0) -> str:
            return goex_cli(daemon, tmp_path, *argv, code=code)

        cli("session", "open", "--http", f"items={json_server.base_url}", "--http-rules", "creates-only")
        cli("http", "POST", "/items", "--json", '{"name": "x"}')
        cli("http", "POST", "/items", "--json", '{"name": "y"}')
        undone = cli("undo", code=4)  # the DELETE went out, but nothing checked that it worked
        assert re.search(r"^undone \S+ \(seq 2\)  POST /items$", undone, re.M), undone
        assert "  unverified: inverse DELETE /items/2 answered 200; nothing to compare the result against" in undone
        assert [i["name"] for i in items(json_server)] == ["x"]
        as_json = json.loads(cli("--json", "undo", code=4))  # the same status whatever the output format
        assert as_json["undone"][0]["reversibility"]["verdict"] == "unknown"
        assert items(json_server) == []
        assert "no pending action to undo" in cli("undo", code=1)
    finally:
        daemon.stop()
