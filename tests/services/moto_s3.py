"""An S3-compatible endpoint for the tests: moto in server mode (`python -m moto.server`), a
subprocess on 127.0.0.1 on a free port, its output in a log file beside it.

`run_moto_s3(dir)` starts one and yields a `MotoS3`; the fixture `moto_s3` starts one per test
module, `s3_bucket` and `s3_versioned_bucket` give a test a fresh, uniquely named bucket on it.
`moto_s3_auth` is a second server that checks signatures (below).

What moto 5.2 accepts (tests/integration/test_rest_services.py holds it to each point):

- By default it checks no signature. Any access key and secret work, and any well-formed
  `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/s3/aws4_request, ...` header
  counts as signed, whatever its signature (`ANY_SIGV4` below); a malformed Authorization
  header gets a 500. A presigned URL works, whatever its signature.
- A request with no Authorization header at all (plain curl/httpx) may create and list buckets,
  set versioning and PUT objects, but GET, HEAD and DELETE of an existing object get an empty
  403 unless the object is public: PUT it with `x-amz-acl: public-read` and it can be read and
  deleted unsigned (a public-read object is deletable by anyone here, unlike on AWS).
- Path-style addressing (http://127.0.0.1:PORT/BUCKET/KEY) is what the clients here use; the
  region is us-east-1. Bucket names follow S3's rules (3 to 63 characters, ...).
- With `verify_signatures=True` (fixture `moto_s3_auth`) moto authenticates every request
  against its IAM: `run_moto_s3` spends moto's first unauthenticated actions
  (INITIAL_NO_AUTH_ACTION_COUNT) on making an IAM user allowed everything, and the server's
  `access_key_id`/`secret_access_key` are that user's. Then a wrong secret gets
  SignatureDoesNotMatch, an unknown key InvalidAccessKeyId, an unsigned object GET a 403 (and
  some unsigned bucket-level requests a 500: moto 5.2 fails on the missing header).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING
from urllib.parse import quote

import boto3
import pytest
from botocore.config import Config

from tests.services.http_service import LoopbackService, serve_http

if TYPE_CHECKING:
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
DUMMY_KEY = "testing"  # what clients use against a server that checks no signature
# A well-formed SigV4 Authorization header with a signature nothing checks: enough for the
# default server to treat a plain HTTP request as signed (see the module's docstring).
ANY_SIGV4: Mapping[str, str] = MappingProxyType(
    {
        "Authorization": f"AWS4-HMAC-SHA256 Credential={DUMMY_KEY}/20240101/{REGION}/s3/aws4_request, "
        "SignedHeaders=host, Signature=0000000000000000000000000000000000000000000000000000000000000000"
    }
)
_ALLOW_ALL = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
_IAM_SETUP_ACTIONS = 3  # create_user, create_access_key, put_user_policy


@dataclass(frozen=True)
class MotoS3(LoopbackService):
    access_key_id: str
    secret_access_key: str
    verify_signatures: bool
    log_path: Path
    start_s: float  # spawn to first answer (and, verifying, the IAM user made)
    region: str = REGION

    def url(self, bucket: str, key: str = "") -> str:
        """The path-style URL of a bucket, or of an object in it."""
        return f"{self.base_url}/{bucket}" + (f"/{quote(key)}" if key else "")

    def client(self, access_key_id: str | None = None, secret_access_key: str | None = None) -> S3Client:
        """A fresh boto3 S3 client for this server: path-style, us-east-1, no retries, no proxy
        from the environment; the server's credentials unless others are given."""
        return _session(
            access_key_id or self.access_key_id, secret_access_key or self.secret_access_key, self.region
        ).client("s3", endpoint_url=self.base_url, config=_config())

    def new_bucket(self, *, versioned: bool = False) -> str:
        """Create a bucket with a fresh name (versioning enabled if asked); returns its name."""
        name = f"goex-test-{uuid.uuid4().hex[:16]}"
        s3 = self.client()
        s3.create_bucket(Bucket=name)
        if versioned:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name


def _session(access_key_id: str, secret_access_key: str, region: str) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key, region_name=region
    )


def _config() -> Config:
    return Config(
        s3={"addressing_style": "path"},
        retries={"total_max_attempts": 1},
        proxies={},  # not None: botocore would take HTTP(S)_PROXY from the environment
        connect_timeout=5,
        read_timeout=30,
    )


@contextlib.contextmanager
def run_moto_s3(state_dir: Path, *, verify_signatures: bool = False, timeout: float = 30) -> Iterator[MotoS3]:
    """Start `python -m moto.server` on 127.0.0.1, yield it, stop it. Its output goes to
    state_dir/moto.log; a failed start raises with the log's tail."""
    state_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    if verify_signatures:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_IAM_SETUP_ACTIONS)
    log_path = state_dir / "moto.log"
    with serve_http(
        "moto server",
        lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        "/moto-api/data.json",
        log_path,
        cwd=state_dir,
        env=env,
        timeout=timeout,
    ) as started:
        ready_at = time.monotonic()
        server = MotoS3(
            port=started.port,
            access_key_id=DUMMY_KEY,
            secret_access_key=DUMMY_KEY,
            verify_signatures=verify_signatures,
            log_path=log_path,
            start_s=started.start_s,
        )
        if verify_signatures:
            iam: IAMClient = _session(DUMMY_KEY, DUMMY_KEY, REGION).client(
                "iam", endpoint_url=server.base_url, config=_config()
            )
            iam.create_user(UserName="goex-test")
            key = iam.create_access_key(UserName="goex-test")["AccessKey"]
            iam.put_user_policy(UserName="goex-test", PolicyName="all", PolicyDocument=_ALLOW_ALL)
            server = dataclasses.replace(
                server,
                access_key_id=key["AccessKeyId"],
                secret_access_key=key["SecretAccessKey"],
                start_s=started.start_s + time.monotonic() - ready_at,
            )
        yield server


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's S3 for one test module, checking no signature; tests share it through fresh buckets."""
    with run_moto_s3(tmp_path_factory.mktemp("moto-s3")) as server:
        yield server


@pytest.fixture(scope="module")
def moto_s3_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """moto's S3 for one test module, checking SigV4 signatures against its IAM user's key."""
    with run_moto_s3(tmp_path_factory.mktemp("moto-s3-auth"), verify_signatures=True) as server:
        yield server


@pytest.fixture
def s3_bucket(moto_s3: MotoS3) -> str:
    """A fresh, empty bucket on `moto_s3` (it lives until the server stops)."""
    return moto_s3.new_bucket()


@pytest.fixture
def s3_versioned_bucket(moto_s3: MotoS3) -> str:
    """A fresh, empty bucket with versioning enabled on `moto_s3`."""
    return moto_s3.new_bucket(versioned=True)
