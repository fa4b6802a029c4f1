"""The shipped HTTP rule sets against the real services (json-server, moto's S3 server), with
plain httpx and no goexd: plan → send the capture → send the call → derive → check that the
call changed something → send the inverse → run the verify call, which must pass; then the
service's own state (json-server's file, boto3 on S3) is compared with what it was before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import pytest
from botocore.exceptions import ClientError

from goexd.domain.models import ReversibilityClass as RC
from goexd.resources.http.rules import (
    Derived,
    Exchange,
    HttpCall,
    RuleSet,
    VerifyKind,
    load_rule_sets,
    verified,
)
from tests.services.json_server import JsonServer
from tests.services.moto_s3 import ANY_SIGV4, MotoS3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SETS = load_rule_sets()
State = Callable[[], object]


@dataclass
class Service:
    http: httpx.Client
    rules: RuleSet
    headers: Mapping[str, str]  # added to every request (moto wants any signature to read objects)

    def send(self, call: HttpCall) -> Exchange:
        r = self.http.request(
            call.method,
            call.path,  # already percent-encoded: httpx keeps escapes as they are
            params=list(call.query),
            headers=[*self.headers.items(), *call.headers],
            content=call.body,
        )
        return Exchange(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)

    def round_trip(
        self, call: HttpCall, rule: str, reversibility: RC, *, changed: bool = True, state: State | None = None
    ) -> Derived:
        """Run the call and its undo as the HTTP resource will; the verify call must pass after
        the undo and (when the call `changed` something) fail before it. `state`, when given,
        reads the service's state: it must change with the call (if `changed`) and be back after
        the undo."""
        initial = state() if state is not None else None
        planned = self.rules.plan(call)
        assert planned.rule == rule
        capture = self.send(planned.capture) if planned.capture is not None else None
        response = self.send(call)
        derived = self.rules.derive(planned, call, response, capture)
        assert derived.reversibility is reversibility, derived.note
        if state is not None:
            assert (state() != initial) is changed
        if derived.verify.kind in (VerifyKind.ABSENT, VerifyKind.PRE_IMAGE):
            assert derived.verify.call is not None
            before_undo = self.send(derived.verify.call)
            assert verified(derived.verify, inverse=None, check=before_undo, capture=capture) is not changed
        inverse = self.send(derived.inverse) if derived.inverse is not None else None
        assert (inverse is not None) is changed, derived.note
        check = self.send(derived.verify.call) if derived.verify.call is not None else None
        assert verified(derived.verify, inverse=inverse, check=check, capture=capture), (derived, inverse, check)
        if state is not None:
            assert state() == initial
        return derived


# ---------------------------------------------------------------- json-server


@pytest.fixture
def rest(json_server: JsonServer) -> Iterator[Service]:
    with json_server.client() as http:
        yield Service(http, SETS["rest"], {})


def _data(rest: Service) -> State:
    """json-server's collections as it serves them, each sorted (a re-created item comes back at
    the end of its list). Read over HTTP: json-server writes its db file after it answers, so the
    file read right after a call may still show the state before it."""

    def read() -> object:
        data: dict[str, list[Any]] = rest.http.get("/db").json()
        return {name: sorted(items, key=lambda i: json.dumps(i, sort_keys=True)) for name, items in data.items()}

    return read


SEED: dict[str, Any] = {
    "items": [{"id": 1, "name": "first", "size": 3, "tags": ["a"]}, {"id": "x y", "name": "spaced"}],
    "users": [],
}
seeded = pytest.mark.parametrize("json_server_seed", [SEED])
JSON_BODY = (("content-type", "application/json"),)


@seeded
def test_rest_create_is_undone_by_deleting_the_returned_id(rest: Service) -> None:
    call = HttpCall("POST", "/items", headers=JSON_BODY, body=b'{"name": "new"}')
    derived = rest.round_trip(call, "rest.create", RC.REVERSIBLE, state=_data(rest))
    assert derived.inverse == HttpCall("DELETE", "/items/2")  # json-server's next id after the numeric 1


@seeded
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("path", ["/items/1", "/items/x%20y"])
def test_rest_update_is_undone_by_putting_the_pre_image_back(rest: Service, method: str, path: str) -> None:
    call = HttpCall(method, path, headers=JSON_BODY, body=b'{"name": "changed"}')
    derived = rest.round_trip(call, "rest.update", RC.REVERSIBLE, state=_data(rest))
    assert derived.inverse is not None and (derived.inverse.method, derived.inverse.path) == ("PUT", path)


@seeded
def test_rest_update_of_a_missing_item_changes_nothing(rest: Service) -> None:
    call = HttpCall("PUT", "/items/99", headers=JSON_BODY, body=b'{"name": "x"}')
    derived = rest.round_trip(call, "rest.update", RC.REVERSIBLE, changed=False, state=_data(rest))
    assert derived.note.startswith("rest.update [refused]")  # json-server's PUT does not create: 404


@seeded
def test_rest_delete_is_undone_by_posting_the_pre_image(rest: Service) -> None:
    # json-server keeps the id it is given, so the item comes back as it was.
    derived = rest.round_trip(HttpCall("DELETE", "/items/1"), "rest.delete", RC.BEST_EFFORT, state=_data(rest))
    assert derived.inverse is not None and (derived.inverse.method, derived.inverse.path) == ("POST", "/items")


@seeded
def test_rest_delete_of_a_missing_item_has_nothing_to_undo(rest: Service) -> None:
    call = HttpCall("DELETE", "/items/99")
    derived = rest.round_trip(call, "rest.delete", RC.REVERSIBLE, changed=False, state=_data(rest))
    assert derived.note.startswith("rest.delete [nothing deleted]")


def test_rest_create_in_a_missing_collection_is_refused(rest: Service) -> None:
    call = HttpCall("POST", "/nosuch", headers=JSON_BODY, body=b"{}")
    derived = rest.round_trip(call, "rest.create", RC.REVERSIBLE, changed=False, state=_data(rest))
    assert derived.note.startswith("rest.create [refused]")


# ---------------------------------------------------------------- moto's S3

KEY = "dir/a b+c.txt"  # a space, a plus and a slash: percent-encoding matters
PATH_KEY = quote(KEY)
BYTES = bytes(range(256)) * 4


@pytest.fixture
def s3(moto_s3: MotoS3) -> Iterator[Service]:
    with httpx.Client(base_url=moto_s3.base_url, trust_env=False, timeout=10) as http:
        yield Service(http, SETS["s3"], ANY_SIGV4)


def _versions(client: S3Client, bucket: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    listing = client.list_object_versions(Bucket=bucket)
    versions = [(v.get("VersionId", ""), v.get("IsLatest", False)) for v in listing.get("Versions", [])]
    markers = [(m.get("VersionId", ""), m.get("IsLatest", False)) for m in listing.get("DeleteMarkers", [])]
    return sorted(versions), sorted(markers)


def _bucket(moto_s3: MotoS3, bucket: str) -> State:
    """A bucket's state through boto3: whether it exists, its versions and delete markers, and
    each current object's bytes, content type and cache-control."""

    client = moto_s3.client()

    def read() -> object:
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            return "no such bucket"
        objects = {}
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=item.get("Key", ""))
            objects[item.get("Key")] = (got["Body"].read(), got.get("ContentType"), got.get("CacheControl"))
        return _versions(client, bucket), objects

    return read


def test_s3_create_bucket_is_undone_by_deleting_it(s3: Service, moto_s3: MotoS3) -> None:
    bucket = f"goex-new-{uuid.uuid4().hex[:12]}"
    derived = s3.round_trip(
        HttpCall("PUT", f"/{bucket}"), "s3.create-bucket", RC.REVERSIBLE, state=_bucket(moto_s3, bucket)
    )
    assert derived.inverse == HttpCall("DELETE", f"/{bucket}")
    with pytest.raises(ClientError):
        moto_s3.client().head_bucket(Bucket=bucket)


def test_s3_create_of_an_existing_bucket_never_deletes_it(s3: Service, moto_s3: MotoS3, s3_bucket: str) -> None:
    moto_s3.client().put_object(Bucket=s3_bucket, Key="keep", Body=b"kept")
    # moto, like S3 in us-east-1, answers 200 to the owner re-creating its bucket.
    derived = s3.round_trip(
        HttpCall("PUT", f"/{s3_bucket}"),
        "s3.create-bucket",
        RC.BEST_EFFORT,
        changed=False,
        state=_bucket(moto_s3, s3_bucket),
    )
    assert derived.note.startswith("s3.create-bucket [existed]")
    assert moto_s3.client().get_object(Bucket=s3_bucket, Key="keep")["Body"].read() == b"kept"


def test_s3_put_of_a_new_object_unversioned(s3: Service, moto_s3: MotoS3, s3_bucket: str) -> None:
    call = HttpCall("PUT", f"/{s3_bucket}/{PATH_KEY}", headers=(("content-type", "text/plain"),), body=b"new")
    derived = s3.round_trip(call, "s3.put-object", RC.REVERSIBLE, state=_bucket(moto_s3, s3_bucket))
    assert derived.inverse == HttpCall("DELETE", f"/{s3_bucket}/{PATH_KEY}")
    assert moto_s3.client().list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_s3_overwrite_unversioned_puts_the_bytes_back(s3: Service, moto_s3: MotoS3, s3_bucket: str) -> None:
    client = moto_s3.client()
    client.put_object(Bucket=s3_bucket, Key=KEY, Body=BYTES, ContentType="image/png", CacheControl="max-age=60")
    call = HttpCall("PUT", f"/{s3_bucket}/{PATH_KEY}", headers=(("content-type", "text/plain"),), body=b"over")
    s3.round_trip(call, "s3.put-object", RC.BEST_EFFORT, state=_bucket(moto_s3, s3_bucket))
    got = client.get_object(Bucket=s3_bucket, Key=KEY)
    assert (got["Body"].read(), got["ContentType"], got.get("CacheControl")) == (BYTES, "image/png", "max-age=60")


def test_s3_overwrite_versioned_deletes_exactly_the_new_version(
    s3: Service, moto_s3: MotoS3, s3_versioned_bucket: str
) -> None:
    client, bucket = moto_s3.client(), s3_versioned_bucket
    v1 = client.put_object(Bucket=bucket, Key=KEY, Body=BYTES)["VersionId"]
    call = HttpCall("PUT", f"/{bucket}/{PATH_KEY}", body=b"second")
    derived = s3.round_trip(call, "s3.put-object", RC.REVERSIBLE, state=_bucket(moto_s3, bucket))
    assert derived.inverse is not None and derived.inverse.query[0][0] == "versionId"
    assert derived.inverse.query[0][1] != v1
    got = client.get_object(Bucket=bucket, Key=KEY)
    assert (got["Body"].read(), got["VersionId"]) == (BYTES, v1)  # the very version, not a copy
    assert _versions(client, bucket) == ([(v1, True)], [])


def test_s3_put_of_a_new_object_versioned_leaves_no_version(
    s3: Service, moto_s3: MotoS3, s3_versioned_bucket: str
) -> None:
    call = HttpCall("PUT", f"/{s3_versioned_bucket}/{PATH_KEY}", body=b"new")
    s3.round_trip(call, "s3.put-object", RC.REVERSIBLE, state=_bucket(moto_s3, s3_versioned_bucket))
    assert _versions(moto_s3.client(), s3_versioned_bucket) == ([], [])  # no delete marker left behind either


def test_s3_copy_versioned_is_undone(s3: Service, moto_s3: MotoS3, s3_versioned_bucket: str) -> None:
    client, bucket = moto_s3.client(), s3_versioned_bucket
    source = client.put_object(Bucket=bucket, Key="source", Body=b"copied")["VersionId"]
    call = HttpCall("PUT", f"/{bucket}/copy", headers=(("x-amz-copy-source", f"/{bucket}/source"),))
    s3.round_trip(call, "s3.put-object", RC.REVERSIBLE, state=_bucket(moto_s3, bucket))
    assert _versions(client, bucket) == ([(source, True)], [])


def test_s3_delete_versioned_removes_the_delete_marker(s3: Service, moto_s3: MotoS3, s3_versioned_bucket: str) -> None:
    client, bucket = moto_s3.client(), s3_versioned_bucket
    v1 = client.put_object(Bucket=bucket, Key=KEY, Body=b"one")["VersionId"]
    v2 = client.put_object(Bucket=bucket, Key=KEY, Body=BYTES, ContentType="image/png")["VersionId"]
    derived = s3.round_trip(
        HttpCall("DELETE", f"/{bucket}/{PATH_KEY}"), "s3.delete-object", RC.REVERSIBLE, state=_bucket(moto_s3, bucket)
    )
    assert derived.note.startswith("s3.delete-object [delete marker]")
    got = client.get_object(Bucket=bucket, Key=KEY)
    assert (got["Body"].read(), got["VersionId"], got["ContentType"]) == (BYTES, v2, "image/png")
    assert _versions(client, bucket) == (sorted([(v1, False), (v2, True)]), [])  # the marker is gone


def test_s3_delete_unversioned_puts_the_bytes_back(s3: Service, moto_s3: MotoS3, s3_bucket: str) -> None:
    client = moto_s3.client()
    client.put_object(Bucket=s3_bucket, Key=KEY, Body=BYTES, ContentType="application/octet-stream")
    derived = s3.round_trip(
        HttpCall("DELETE", f"/{s3_bucket}/{PATH_KEY}"),
        "s3.delete-object",
        RC.BEST_EFFORT,
        state=_bucket(moto_s3, s3_bucket),
    )
    assert derived.note.startswith("s3.delete-object [deleted]")
    got = client.get_object(Bucket=s3_bucket, Key=KEY)
    assert (got["Body"].read(), got["ContentType"]) == (BYTES, "application/octet-stream")


def test_s3_delete_of_a_missing_object_has_nothing_to_undo(s3: Service, moto_s3: MotoS3, s3_bucket: str) -> None:
    call = HttpCall("DELETE", f"/{s3_bucket}/missing")
    derived = s3.round_trip(call, "s3.delete-object", RC.REVERSIBLE, changed=False, state=_bucket(moto_s3, s3_bucket))
    assert derived.note.startswith("s3.delete-object [absent]")  # moto answers 204 and keeps nothing


def test_s3_delete_bucket_is_undone_by_re_creating_it(s3: Service, moto_s3: MotoS3, s3_bucket: str) -> None:
    derived = s3.round_trip(
        HttpCall("DELETE", f"/{s3_bucket}"), "s3.delete-bucket", RC.BEST_EFFORT, state=_bucket(moto_s3, s3_bucket)
    )
    assert derived.verify.kind is VerifyKind.STATUS
    moto_s3.client().head_bucket(Bucket=s3_bucket)  # raises unless it is back


def test_s3_delete_of_a_non_empty_bucket_is_refused(s3: Service, moto_s3: MotoS3, s3_bucket: str) -> None:
    moto_s3.client().put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    derived = s3.round_trip(
        HttpCall("DELETE", f"/{s3_bucket}"),
        "s3.delete-bucket",
        RC.REVERSIBLE,
        changed=False,
        state=_bucket(moto_s3, s3_bucket),
    )
    assert derived.note.startswith("s3.delete-bucket [refused]")  # 409 BucketNotEmpty
