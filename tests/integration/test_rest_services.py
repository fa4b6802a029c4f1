"""The REST services the tests of HTTP actions run against (tests/services): moto's S3 and
json-server really hold state and answer as documented, and the subprocess helper they start
with reports failed starts and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.services.http_service import ServiceStartError, serve_http
from tests.services.json_server import JsonServer, run_json_server
from tests.services.moto_s3 import ANY_SIGV4, MotoS3

# --- moto's S3 -------------------------------------------------------------------------------


def _error_code(e: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return str(e.value.response["Error"]["Code"]), int(e.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_moto_bucket_and_object_round_trip_with_boto3(moto_s3: MotoS3) -> None:
    s3 = moto_s3.client()
    bucket = "goex-round-trip"
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b.get("Name") for b in s3.list_buckets()["Buckets"]]

    put = s3.put_object(Bucket=bucket, Key="dir/a.txt", Body=b"hello", ContentType="text/plain")
    got = s3.get_object(Bucket=bucket, Key="dir/a.txt")
    assert got["Body"].read() == b"hello"
    assert got["ContentType"] == "text/plain"
    assert got["ETag"] == put["ETag"]
    assert s3.head_object(Bucket=bucket, Key="dir/a.txt")["ContentLength"] == 5
    assert [o.get("Key") for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])] == ["dir/a.txt"]

    s3.delete_object(Bucket=bucket, Key="dir/a.txt")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dir/a.txt")
    assert _error_code(e) == ("NoSuchKey", 404)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    # An unversioned bucket keeps nothing of a deleted object.
    assert "Versions" not in s3.list_object_versions(Bucket=bucket)


def test_moto_state_is_shared_between_clients_and_buckets_are_fresh(
    moto_s3: MotoS3, s3_bucket: str, s3_versioned_bucket: str
) -> None:
    assert s3_bucket != s3_versioned_bucket
    moto_s3.client().put_object(Bucket=s3_bucket, Key="k", Body=b"v")
    other = moto_s3.client()  # a new connection sees what the first one stored
    assert other.get_object(Bucket=s3_bucket, Key="k")["Body"].read() == b"v"
    assert other.list_objects_v2(Bucket=s3_versioned_bucket)["KeyCount"] == 0
    assert "Status" not in other.get_bucket_versioning(Bucket=s3_bucket)
    assert other.get_bucket_versioning(Bucket=s3_versioned_bucket)["Status"] == "Enabled"


def test_moto_plain_http_unsigned_and_with_any_signature(moto_s3: MotoS3) -> None:
    bucket = "goex-plain-http"
    with httpx.Client(trust_env=False, timeout=10) as http:
        # No Authorization header: bucket-level calls and PUT work...
        assert http.put(moto_s3.url(bucket)).status_code == 200
        assert http.put(moto_s3.url(bucket, "private.txt"), content=b"private").status_code == 200
        listing = http.get(moto_s3.url(bucket))
        assert listing.status_code == 200
        assert "<Key>private.txt</Key>" in listing.text
        assert moto_s3.client().get_object(Bucket=bucket, Key="private.txt")["Body"].read() == b"private"
        # ...but reading or deleting a private object is refused (an empty 403).
        refused = http.get(moto_s3.url(bucket, "private.txt"))
        assert (refused.status_code, refused.content) == (403, b"")
        assert http.delete(moto_s3.url(bucket, "private.txt")).status_code == 403
        # Any well-formed SigV4 header passes: nothing checks the signature.
        signed = http.get(moto_s3.url(bucket, "private.txt"), headers=ANY_SIGV4)
        assert (signed.status_code, signed.content) == (200, b"private")
        # A malformed one breaks moto.
        assert http.get(moto_s3.url(bucket, "private.txt"), headers={"Authorization": "x"}).status_code == 500

        # A public-read object can be read, and deleted, unsigned.
        public = moto_s3.url(bucket, "public file.txt")
        assert http.put(public, content=b"public", headers={"x-amz-acl": "public-read"}).status_code == 200
        got = http.get(public)
        assert (got.status_code, got.content) == (200, b"public")
        assert http.head(public).headers["content-length"] == "6"
        assert http.delete(public).status_code == 204
        gone = http.get(public)
        assert gone.status_code == 404
        assert "<Code>NoSuchKey</Code>" in gone.text


def test_moto_checks_no_signature_by_default(moto_s3: MotoS3, s3_bucket: str) -> None:
    stranger = moto_s3.client("AKIDNOBODYKNOWS", "not-the-secret")
    stranger.put_object(Bucket=s3_bucket, Key="k", Body=b"by anyone")
    url = moto_s3.client().generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "k"})
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(url).content == b"by anyone"
        tampered = url.replace("Signature=", "Signature=00")
        assert tampered != url
        assert http.get(tampered).content == b"by anyone"


def test_moto_versioned_bucket_keeps_versions_and_delete_makes_a_marker(
    moto_s3: MotoS3, s3_versioned_bucket: str
) -> None:
    s3, bucket = moto_s3.client(), s3_versioned_bucket
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    assert v1 != v2
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"

    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    assert marker not in (v1, v2)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="k")
    assert _error_code(e) == ("NoSuchKey", 404)

    listing = s3.list_object_versions(Bucket=bucket, Prefix="k")
    versions = {v.get("VersionId"): v.get("IsLatest") for v in listing["Versions"]}
    assert versions == {v1: False, v2: False}
    assert [(m.get("VersionId"), m.get("IsLatest")) for m in listing["DeleteMarkers"]] == [(marker, True)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"

    # Deleting the marker brings the last version back.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"


def test_moto_auth_verifies_signatures(moto_s3_auth: MotoS3) -> None:
    server = moto_s3_auth
    assert server.verify_signatures
    s3 = server.client()
    bucket = server.new_bucket()
    s3.put_object(Bucket=bucket, Key="k", Body=b"signed")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"signed"

    with pytest.raises(ClientError) as e:
        server.client(server.access_key_id, "not-the-secret").get_object(Bucket=bucket, Key="k")
    assert _error_code(e) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as e:
        server.client("AKIDNOBODYKNOWS", "whatever").get_object(Bucket=bucket, Key="k")
    assert _error_code(e) == ("InvalidAccessKeyId", 403)
    with httpx.Client(trust_env=False, timeout=10) as http:
        assert http.get(server.url(bucket, "k")).status_code == 403
        assert http.get(server.url(bucket, "k"), headers=ANY_SIGV4).status_code == 403


# --- json-server -----------------------------------------------------------------------------


def test_json_server_post_creates_with_an_id(json_server: JsonServer) -> None:
    with json_server.client() as http:
        assert http.get("/items").json() == []
        r = http.post("/items", json={"name": "first"})
        assert r.status_code == 201
        first = r.json()
        assert first == {"id": 1, "name": "first"}
        assert r.headers["location"] == json_server.url("/items/1")
        second = http.post("/items", json={"name": "second"}).json()
        assert second["id"] == 2
        assert http.get("/items/1").json() == first
        assert http.get("/items").json() == [first, second]
    assert json_server.db() == {"items": [first, second], "users": []}
    # The file catches up some time after the answers (json-server writes it asynchronously).
    deadline = time.monotonic() + 5
    while json.loads(json_server.db_path.read_text()) != json_server.db():
        assert time.monotonic() < deadline, json_server.db_path.read_text()
        time.sleep(0.02)


def test_json_server_put_patch_delete(json_server: JsonServer) -> None:
    with json_server.client() as http:
        item = http.post("/items", json={"name": "a", "size": 1}).json()
        url = f"/items/{item['id']}"

        put = http.put(url, json={"name": "b"})
        assert put.status_code == 200
        assert put.json() == {"id": item["id"], "name": "b"}  # replaced: size is gone, the id stays
        patch = http.patch(url, json={"colour": "red"})
        assert patch.status_code == 200
        assert patch.json() == {"id": item["id"], "name": "b", "colour": "red"}  # merged
        assert http.get(url).json() == patch.json()
        assert json_server.db()["items"] == [patch.json()]

        deleted = http.delete(url)
        assert (deleted.status_code, deleted.json()) == (200, {})
        assert http.get(url).status_code == 404
        assert http.get("/items").json() == []
    assert json_server.db()["items"] == []


def test_json_server_missing_id_is_404(json_server: JsonServer) -> None:
    with json_server.client() as http:
        http.post("/items", json={"name": "only"})
        assert http.get("/items/999").status_code == 404
        assert http.put("/items/999", json={"name": "x"}).status_code == 404  # PUT does not create
        assert http.patch("/items/999", json={"name": "x"}).status_code == 404
        assert http.delete("/items/999").status_code == 404
        assert http.get("/no-such-collection").status_code == 404
        assert [i["name"] for i in http.get("/items").json()] == ["only"]


@pytest.mark.parametrize("which", ["one", "two"])
def test_json_server_tests_do_not_see_each_other(json_server: JsonServer, which: str) -> None:
    # Whichever runs second would see the first's item if the server or its file were shared.
    with json_server.client() as http:
        assert http.get("/items").json() == []
        assert http.post("/items", json={"written_by": which}).json() == {"id": 1, "written_by": which}


@pytest.mark.parametrize(
    "json_server_seed", [{"items": [{"id": 7, "name": "seven"}], "users": [{"id": "u1", "name": "Ann"}]}]
)
def test_json_server_takes_a_seed(json_server: JsonServer, json_server_seed: dict[str, Any]) -> None:
    with json_server.client() as http:
        assert http.get("/items/7").json() == {"id": 7, "name": "seven"}
        assert http.get("/users/u1").json() == {"id": "u1", "name": "Ann"}
        assert http.post("/items", json={"name": "eight"}).json()["id"] == 8


def test_json_server_stops_at_the_end(tmp_path: Path) -> None:
    with run_json_server(tmp_path / "js", {"things": []}) as server:
        assert httpx.get(server.url("/things"), trust_env=False).json() == []
        assert server.start_s < 10
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url("/things"), trust_env=False, timeout=2)


# --- the subprocess helper -------------------------------------------------------------------


def test_a_service_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('no database here', flush=True); sys.exit(3)"
    with (
        pytest.raises(ServiceStartError, match=r"(?s)exited with 3.*no database here"),
        serve_http("broken", lambda port: [sys.executable, "-c", code], "/", tmp_path / "log", cwd=tmp_path),
    ):
        pass


def test_a_service_that_never_answers_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    with (
        pytest.raises(ServiceStartError, match="did not answer in 1s"),
        serve_http("silent", lambda port: [sys.executable, "-c", code], "/", tmp_path / "log", cwd=tmp_path, timeout=1),
    ):
        pass
    _assert_gone(int(pid_file.read_text()))


def test_a_service_dies_with_the_test_process(tmp_path: Path) -> None:
    # A test process killed outright (no clean-up runs) must not leave its servers behind.
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tests.services.http_service import serve_http\n"
        f"d = Path({str(tmp_path)!r})\n"
        "argv = lambda port: [sys.executable, '-m', 'http.server', '-b', '127.0.0.1', str(port)]\n"
        "with serve_http('http.server', argv, '/', d / 'log', cwd=d) as s:\n"
        "    print(s.pid, s.port, flush=True)\n"
        "    time.sleep(60)\n"
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    try:
        pid, port = map(int, parent.stdout.readline().split())
        assert httpx.get(f"http://127.0.0.1:{port}/", trust_env=False).status_code == 200
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    _assert_gone(pid)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", trust_env=False, timeout=2)


def _assert_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # Not our child (a grandchild reparented to init, which reaps it): wait for it to go.
        if _is_zombie(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"process {pid} still runs")


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return False
