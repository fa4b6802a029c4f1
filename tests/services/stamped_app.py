"""The stamped service's Flask app (tests/services/stamped_service.py says what it does), run as a script:
python stamped_app.py PORT."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from flask import Flask, Response, request


def _app() -> Any:
    app = Flask(__name__)
    lock = threading.Lock()
    items: dict[str, dict[str, Any]] = {}
    trash: list[dict[str, Any]] = []
    writes = [0]

    def stamp(item_id: str, body: dict[str, Any]) -> dict[str, Any]:
        writes[0] += 1
        doc = {k: v for k, v in body.items() if k not in ("id", "updated", "meta")}
        return {"id": item_id, **doc, "updated": writes[0], "meta": {"etag": f"e{writes[0]}", "kind": "note"}}

    for item_id, text in (("1", "a"), ("2", "b")):
        items[item_id] = stamp(item_id, {"text": text})

    @app.get("/_ready")
    def ready() -> Any:
        return {"ok": True}

    @app.get("/_trash")
    def trash_now() -> Any:
        with lock:
            return Response(json_text(trash), 200, mimetype="application/json")

    @app.get("/_state")
    def state() -> Any:
        with lock:
            return {"items": items, "trash": trash}

    @app.route("/stamped/<item_id>", methods=["GET", "PUT", "PATCH", "DELETE"])
    def stamped(item_id: str) -> Any:
        with lock:
            found = items.get(item_id)
            if request.method == "GET":
                return found if found is not None else Response("{}", 404, mimetype="application/json")
            if request.method == "DELETE":
                if found is None:
                    return Response("{}", 404, mimetype="application/json")
                trash.append(items.pop(item_id))
                return Response(b"", 204)
            body = request.get_json(force=True)
            if request.method == "PATCH":
                if found is None:
                    return Response("{}", 404, mimetype="application/json")
                body = {**found, **body}
            items[item_id] = stamp(item_id, body)
            return Response(json_text(items[item_id]), 201 if found is None else 200, mimetype="application/json")

    return app


def json_text(doc: Any) -> str:
    return json.dumps(doc)


if __name__ == "__main__":
    _app().run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
