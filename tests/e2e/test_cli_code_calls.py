"""`goex python --http NAME` as a user types it: code in the sandbox calls a session's http resource
(json-server) through goexd's egress proxy; the CLI shows each call with its inverse, `goex undo`
takes the call back, and `goex show` has the verdict."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.daemon_process import DaemonProcess
from tests.e2e.test_cli_http import items
from tests.e2e.test_cli_sql import goex as goex_cli
from tests.services.json_server import JsonServer

# HTTP_PROXY is set in the sandbox: urllib goes through goexd's proxy on its own.
POST_CHAIR = """
import json, urllib.request
request = urllib.request.Request(
    {url!r} + "/items",
    data=json.dumps({{"name": "chair", "price": 30}}).encode(),
    headers={{"Content-Type": "application/json"}},
    method="POST",
)
with urllib.request.urlopen(request, timeout=20) as r:
    print(r.status, r.read().decode())
"""


def test_a_call_from_python_code_is_shown_with_its_inverse_undone_and_verified(
    daemon: DaemonProcess, json_server: JsonServer, workspace: Path, tmp_path: Path
) -> None:
    def cli(*argv: str, code: int = 0) -> str:
        return goex_cli(daemon, tmp_path, *argv, code=code)

    cli("session", "open", "--fs", str(workspace), "--http", f"api={json_server.base_url}")
    ran = cli("python", "--http", "api", POST_CHAIR.format(url=json_server.base_url))
    assert re.search(r'^201 \{\n  "name": "chair",\n  "price": 30,\n  "id": 1\n\}$', ran, re.M), ran
    # The egress table: the request, and what goexd made of the call (the UNDO column).
    assert re.search(r"^METHOD\s+URL\s+STATUS\s+DECISION\s+REASON\s+UNDO\s*$", ran, re.M), ran
    row = rf"^POST\s+{re.escape(json_server.base_url)}/items\s+201\s+allowed\s+-\s+"
    assert re.search(row + r"api: reversible, inverse DELETE /items/1\s*$", ran, re.M), ran
    action = re.search(r"^action (\S+): executed\b", ran, re.M)
    assert action is not None, ran
    assert items(json_server) == [{"name": "chair", "price": 30, "id": 1}]

    undone = cli("undo")
    assert undone.startswith(f"undone {action[1]} "), undone
    assert "verified: " in undone and "DELETE /items/1 answered 200" in undone, undone
    assert items(json_server) == []

    shown = cli("show", action[1])
    assert re.search(r"^state\s+undone\b", shown, re.M), shown
    assert re.search(row + r"api: reversible, inverse DELETE /items/1; undone, verified: ", shown, re.M), shown
    assert "GET /items/1 answered 404 (gone, as expected)" in shown, shown
    # The same verdict as goexd keeps it.
    (record,) = json.loads(cli("--json", "show", action[1]))["action"]["egress"]
    assert record["resource"] == "api" and record["reversibility"]["verdict"] == "passed", record
    assert record["inverse"]["method"] == "DELETE" and record["inverse"]["path"] == "/items/1"
