"""Generic HTTP semantics (the shipped `generic` rule set) against two real services whose shapes
differ from json-server's and S3's, with plain httpx and no goexd: WsgiDAV (PyPI; files at any
depth, non-JSON bodies, PUT answered 201 with an HTML body or 204 with none, strong ETags) and the
Community Solid Server (npm; PUT answered 201/205 with no body, POST answered 201 with a Location,
Allow headers). Each call is planned, captured, sent, derived, undone and verified as the HTTP
resource does it (tests/integration/test_http_rules_live.py's Service), then the service's own
state, the files it stores, is compared with what it was before. A change made by someone else
between the call and its undo is caught by the preconditions the undo carries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from goexd.domain.models import ReversibilityClass as RC
from goexd.resources.http.rules import Derived, Exchange, HttpCall, RuleSet, VerifyKind, select_rules, verified
from tests.integration.test_http_rules_live import SETS, Service
from tests.services.json_server import JsonServer
from tests.services.solid_server import SolidServer, solid_server  # noqa: F401 - the fixture
from tests.services.wsgidav_server import WsgiDav, wsgidav  # noqa: F401 - the fixture

BINARY = bytes(range(256)) * 3
TEXT = (("content-type", "text/plain"),)
JSON = (("content-type", "application/json"),)


def generic(base_url: str) -> RuleSet:
    return select_rules(SETS, "generic", base_url)


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def forward(service: Service, call: HttpCall) -> tuple[Derived, Exchange]:
    """Plan, capture, send and derive the call as the HTTP resource does: its derivation and capture."""
    planned = service.rules.plan(call)
    assert planned.capture is not None
    capture = service.send(planned.capture)
    return service.rules.derive(planned, call, service.send(call), capture), capture


def undo(service: Service, derived: Derived, capture: Exchange) -> tuple[int, bool]:
    """Send the inverse and the verify call: the inverse's status and whether the check passed."""
    assert derived.inverse is not None
    answer = service.send(derived.inverse)
    check = service.send(derived.verify.call) if derived.verify.call is not None else None
    return answer.status, verified(derived.verify, inverse=answer, check=check, capture=capture)


# ---------------------------------------------------------------- WsgiDAV


@pytest.fixture
def dav(wsgidav: WsgiDav) -> Iterator[Service]:  # noqa: F811 - the fixture imported above
    with wsgidav.client() as http:
        yield Service(http, generic(wsgidav.base_url), {})


def test_dav_put_of_a_new_file_at_the_root_is_undone_by_a_conditional_delete(dav: Service, wsgidav: WsgiDav) -> None:  # noqa: F811
    path = f"/{unique('report')}.txt"
    call = HttpCall("PUT", path, headers=TEXT, body=b"quarterly\n")
    derived = dav.round_trip(call, "generic.put", RC.REVERSIBLE, state=wsgidav.files)
    assert derived.inverse is not None and derived.inverse.method == "DELETE"
    etag = dict(derived.inverse.headers)["if-match"]
    assert etag.startswith('"') and derived.note.startswith("generic.put [created]")


def test_dav_put_over_a_file_puts_the_bytes_back(dav: Service, wsgidav: WsgiDav) -> None:  # noqa: F811
    path = f"/{unique('notes')}.txt"
    assert dav.send(HttpCall("PUT", path, body=b"first\r\nline\n")).status == 201
    call = HttpCall("PUT", path, headers=TEXT, body=b"second")
    derived = dav.round_trip(call, "generic.put", RC.REVERSIBLE, state=wsgidav.files)
    assert derived.inverse is not None and derived.inverse.body == b"first\r\nline\n"
    assert ("content-type", "text/plain; charset=utf-8") in derived.inverse.headers  # as the capture had it


def test_dav_nested_binary_file_replaced_and_created(dav: Service, wsgidav: WsgiDav) -> None:  # noqa: F811
    top = unique("a")
    for folder in (f"/{top}", f"/{top}/b"):
        assert dav.send(HttpCall("MKCOL", folder)).status == 201
    path = f"/{top}/b/blob.bin"
    assert dav.send(HttpCall("PUT", path, body=BINARY)).status == 201
    call = HttpCall("PUT", path, body=BINARY[::-1])
    derived = dav.round_trip(call, "generic.put-nested", RC.REVERSIBLE, state=wsgidav.files)
    assert derived.inverse is not None and derived.inverse.body == BINARY
    # a new file below existing collections: undone exactly (WebDAV makes no collection on the way)
    new = HttpCall("PUT", f"/{top}/b/c.json", headers=JSON, body=b'{"a": [1, 2]}')
    dav.round_trip(new, "generic.put-nested", RC.BEST_EFFORT, state=wsgidav.files)


def test_dav_delete_is_undone_by_putting_the_file_back(dav: Service, wsgidav: WsgiDav) -> None:  # noqa: F811
    top = unique("cfg")
    assert dav.send(HttpCall("MKCOL", f"/{top}")).status == 201
    for path, body in ((f"/{top}.txt", b"root file"), (f"/{top}/app.json", b'{"debug": false, "n": 1.0}')):
        assert dav.send(HttpCall("PUT", path, body=body)).status == 201
        # wsgidav's GET has no Allow header: whether a PUT may re-create is not known before
        derived = dav.round_trip(HttpCall("DELETE", path), "generic.delete", RC.BEST_EFFORT, state=wsgidav.files)
        assert derived.inverse is not None and ("if-none-match", "*") in derived.inverse.headers


def test_dav_refused_and_missing(dav: Service, wsgidav: WsgiDav) -> None:  # noqa: F811
    # a PUT below a collection that does not exist: 409, nothing changed
    refused = HttpCall("PUT", f"/{unique('nodir')}/x.txt", body=b"x")
    derived = dav.round_trip(refused, "generic.put-nested", RC.REVERSIBLE, changed=False, state=wsgidav.files)
    assert derived.note.startswith("generic.put-nested [refused]")
    gone = HttpCall("DELETE", f"/{unique('gone')}.txt")
    derived = dav.round_trip(gone, "generic.delete", RC.REVERSIBLE, changed=False, state=wsgidav.files)
    assert derived.note.startswith("generic.delete [nothing deleted]")


def test_dav_put_onto_a_collection_is_irreversible_before_it_is_sent(dav: Service) -> None:
    folder = f"/{unique('col')}"
    assert dav.send(HttpCall("MKCOL", folder)).status == 201
    call = HttpCall("PUT", folder, body=b"x")
    planned = dav.rules.plan(call)
    assert planned.capture is not None
    capture = dav.send(planned.capture)
    assert capture.status == 301  # to folder + "/"
    assert dav.rules.predict(planned, call, capture) is RC.IRREVERSIBLE  # known before the call is sent


def test_dav_undo_over_a_file_changed_since_is_refused_not_applied(dav: Service, wsgidav: WsgiDav) -> None:  # noqa: F811
    path = f"/{unique('shared')}.txt"
    assert dav.send(HttpCall("PUT", path, body=b"v1")).status == 201
    call = HttpCall("PUT", path, body=b"v2")
    derived, capture = forward(dav, call)
    assert derived.reversibility is RC.REVERSIBLE
    assert dav.send(HttpCall("PUT", path, body=b"v3 by someone else")).status == 204
    status, ok = undo(dav, derived, capture)
    assert (status, ok) == (412, False)  # If-Match: the write's ETag is no longer the file's
    assert (wsgidav.root / path[1:]).read_bytes() == b"v3 by someone else"  # their change is kept

    # the same for a deleted file made again meanwhile: If-None-Match: * refuses to overwrite it
    delete = HttpCall("DELETE", path)
    derived, capture = forward(dav, delete)
    assert dav.send(HttpCall("PUT", path, body=b"v4 by someone else")).status == 201
    assert undo(dav, derived, capture) == (412, False)
    assert (wsgidav.root / path[1:]).read_bytes() == b"v4 by someone else"


def test_dav_a_wrong_state_after_the_undo_fails_its_check(dav: Service) -> None:
    path = f"/{unique('drift')}.txt"
    assert dav.send(HttpCall("PUT", path, body=b"before")).status == 201
    call = HttpCall("PUT", path, body=b"after")
    derived, capture = forward(dav, call)
    assert derived.inverse is not None and derived.verify.call is not None
    answer = dav.send(derived.inverse)
    dav.send(HttpCall("PUT", path, body=b"befor"))  # someone writes between the undo and its check
    check = dav.send(derived.verify.call)
    assert not verified(derived.verify, inverse=answer, check=check, capture=capture)


# ---------------------------------------------------------------- Community Solid Server


@pytest.fixture
def solid(solid_server: SolidServer) -> Iterator[Service]:  # noqa: F811
    with solid_server.client() as http:
        yield Service(http, generic(solid_server.base_url), {})


def _container(solid: Service) -> str:
    """A fresh container with one document in it (so a PUT below it makes no container)."""
    top = unique("c")
    assert solid.send(HttpCall("PUT", f"/{top}/seed.txt", headers=TEXT, body=b"seed")).status == 201
    return top


def test_solid_post_answered_with_a_location_is_undone_by_deleting_it(
    solid: Service,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    top = _container(solid)
    for path in (f"/{top}/", f"/{top}"):  # the container, with or without its slash
        call = HttpCall("POST", path, headers=TEXT, body=b"a note")
        derived = solid.round_trip(
            call,
            "generic.create-in-container" if path.endswith("/") else "generic.create",
            RC.BEST_EFFORT,
            state=solid_server.files,
        )
        assert derived.inverse is not None and derived.inverse.path.startswith(f"/{top}/")
        assert derived.note.startswith(f"{derived.note.split(' ')[0]} [located]")


def test_solid_put_replace_and_delete_of_documents(solid: Service, solid_server: SolidServer) -> None:  # noqa: F811
    top = _container(solid)
    path = f"/{top}/app.json"
    assert solid.send(HttpCall("PUT", path, headers=JSON, body=b'{"a": 1}')).status == 201
    # 205, no body, no ETag: the undo puts the JSON back as it was
    replaced = HttpCall("PUT", path, headers=JSON, body=b'{"a": 2}')
    derived = solid.round_trip(replaced, "generic.put-nested", RC.REVERSIBLE, state=solid_server.files)
    assert derived.inverse is not None and ("content-type", "application/json") in derived.inverse.headers
    # its Allow header lists PUT, so putting a deleted document back is expected to work
    derived = solid.round_trip(HttpCall("DELETE", path), "generic.delete", RC.REVERSIBLE, state=solid_server.files)
    assert "[deleted, PUT allowed]" in derived.note
    new = HttpCall("PUT", f"/{top}/new.txt", headers=TEXT, body=b"new")
    solid.round_trip(new, "generic.put-nested", RC.BEST_EFFORT, state=solid_server.files)


def test_solid_patch_of_a_turtle_document_is_undone_by_a_put(solid: Service, solid_server: SolidServer) -> None:  # noqa: F811
    top = _container(solid)
    path = f"/{top}/card.ttl"
    turtle = b'<#me> <http://xmlns.com/foaf/0.1/name> "Ann".\n'
    assert solid.send(HttpCall("PUT", path, headers=(("content-type", "text/turtle"),), body=turtle)).status == 201
    patch = HttpCall(
        "PATCH",
        path,
        headers=(("content-type", "application/sparql-update"),),
        body=b'INSERT DATA { <#me> <http://xmlns.com/foaf/0.1/nick> "annie". }',
    )
    derived = solid.round_trip(patch, "generic.patch", RC.REVERSIBLE, state=solid_server.files)
    assert "[patched, PUT allowed]" in derived.note


def test_solid_put_of_a_new_nested_document_leaves_the_containers_it_made(
    solid: Service,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    # What makes that undo best effort: the document goes, the containers the PUT made stay.
    top = unique("deep")
    call = HttpCall("PUT", f"/{top}/b/c.json", headers=JSON, body=b"[]")
    before = solid_server.files()
    derived = solid.round_trip(call, "generic.put-nested", RC.BEST_EFFORT)
    after = solid_server.files()
    assert derived.verify.kind is VerifyKind.ABSENT
    assert {k for k in after if k not in before} >= {f"{top}/", f"{top}/b/"}
    assert not any(k.startswith(f"{top}/b/c.json") for k in after)


def test_solid_undo_of_a_delete_does_not_overwrite_a_document_made_since(
    solid: Service,
    solid_server: SolidServer,  # noqa: F811
) -> None:
    top = _container(solid)
    path = f"/{top}/doc.txt"
    assert solid.send(HttpCall("PUT", path, headers=TEXT, body=b"mine")).status == 201
    delete = HttpCall("DELETE", path)
    derived, capture = forward(solid, delete)
    assert solid.send(HttpCall("PUT", path, headers=TEXT, body=b"theirs")).status == 201
    assert undo(solid, derived, capture) == (412, False)
    assert solid.send(HttpCall("GET", path)).body == b"theirs"


# ---------------------------------------------------------------- json-server's nested POST


@pytest.mark.parametrize("json_server_seed", [{"items": [{"id": 1, "name": "desk"}], "reviews": []}])
def test_a_location_delete_cannot_remove_is_why_a_located_post_is_best_effort(json_server: JsonServer) -> None:
    """json-server makes POST /items/1/reviews's review in /reviews and answers a Location under
    /items/1/reviews, where nothing answers: the undo's DELETE is refused (404) and fails."""
    with json_server.client() as http:
        service = Service(http, select_rules(SETS, "rest", json_server.base_url), {})
        call = HttpCall("POST", "/items/1/reviews", headers=JSON, body=b'{"stars": 5}')
        planned = service.rules.plan(call)
        assert (planned.rule, planned.predicted) == ("generic.create", RC.IRREVERSIBLE)  # needs an approval
        derived = service.rules.derive(planned, call, service.send(call), None)
        assert derived.reversibility is RC.BEST_EFFORT and "[located]" in derived.note
        assert derived.inverse == HttpCall("DELETE", "/items/1/reviews/1")
        answer = service.send(derived.inverse)
        assert answer.status == 404 and not verified(derived.verify, inverse=answer, check=None, capture=None)
        assert http.get("/reviews").json() == [{"stars": 5, "itemId": "1", "id": 1}]  # still there
