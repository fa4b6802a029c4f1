"""`make bench`, second part: the vault and the egress path, each beside a baseline, in one run.

1. Vault open: `Vault.open` of a vault holding 50 secrets, for each key source (key file;
   passphrase with Argon2id; passphrase with scrypt), vs the GoEx prototype's way: `json.load`
   of a plaintext secrets file holding the same 50 secrets.
2. Per request, in-process: what the proxy runs for each request (`policy.decide`: reachable
   host, placeholders checked and filled, declared secrets added) and for its response (headers
   redacted, a 64 KiB body through `vault.redactor.stream()` in the proxy's read size), with 10
   and with 50 secrets in the vault, vs the same request and body passed through untouched.
3. End to end: a GET of 64 KiB from httpbin (werkzeug on 127.0.0.1, in a thread) with httpx,
   straight to the server vs through a real `EgressProxy` route (its Unix socket, the request in
   proxy absolute form) that adds a declared bearer secret; again with the same server in a
   child process, which takes the contention for this process's GIL out of the comparison.

Prints Markdown tables and writes them to bench/vault_results.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpcore
import httpx
from httpcore._async.http11 import AsyncHTTP11Connection  # private, but where the read size is defined
from measure import ms_since, pct, progress, publish, table
from werkzeug.serving import WSGIRequestHandler, make_server

from goexd.config import Config, EgressConfig, VaultConfig
from goexd.domain.egress import Decision, EgressGrant
from goexd.domain.secrets import PUBLIC_PARTS, Injection, InjectionTarget, SecretKind, SecretRequest
from goexd.egress.policy import decide, parse_url
from goexd.egress.proxy import EgressProxy, Route
from goexd.egress.substitute import Request, placeholder
from goexd.egress.upstream import response_headers
from goexd.vault.keys import PASSPHRASE_ENV
from goexd.vault.redact import Redactor
from goexd.vault.sealed_file import ARGON2ID_DEFAULTS, SCRYPT_DEFAULTS, derive_key, read_header
from goexd.vault.vault import Vault

CORES = os.cpu_count() or 1
BODY_BYTES = 64 * 1024
# The most the proxy gets per body chunk: httpx reads the upstream socket in httpcore's
# READ_NUM_BYTES (64 KiB), and `Exchange._relay_body` feeds each chunk to the stream redactor.
PROXY_CHUNK = AsyncHTTP11Connection.READ_NUM_BYTES
PASSPHRASE = "correct horse battery staple"  # the benchmark's own throwaway vault
API_VALUE = "api-" + secrets.token_hex(16)  # the declared bearer secret "api"
KEY_VALUE = "key-" + secrets.token_hex(16)  # the declared api_key "key", placeholder in X-Api-Key
_A, _S = ARGON2ID_DEFAULTS, SCRYPT_DEFAULTS
KEY_SOURCES = [
    ("key file", "keyfile", "argon2id"),
    (
        f"passphrase, Argon2id (t={_A['iterations']}, m={_A['memory_kib'] // 1024} MiB, p={_A['lanes']})",
        "passphrase",
        "argon2id",
    ),
    (f"passphrase, scrypt (N=2^{_S['n'].bit_length() - 1}, r={_S['r']}, p={_S['p']})", "passphrase", "scrypt"),
]


# ---------------------------------------------------------------- helpers


def p50_p99(xs: list[float], digits: int = 2) -> str:
    return f"{pct(xs, 0.5):.{digits}f} / {pct(xs, 0.99):.{digits}f}"


def added(xs: list[float], base: list[float], digits: int = 2) -> str:
    return f"+{pct(xs, 0.5) - pct(base, 0.5):.{digits}f} / +{pct(xs, 0.99) - pct(base, 0.99):.{digits}f}"


# ---------------------------------------------------------------- the vault's contents


LOCAL_API = "http://127.0.0.1:8080"  # the request-path section's target (plain http: named with its scheme)


def secret_requests(n: int) -> list[SecretRequest]:
    """`api` (bearer) and `key` (api_key as X-Api-Key) for http://127.0.0.1:8080, then a mix of kinds for other
    hosts. (The end-to-end section stores `api` again for its upstream's port.)"""
    reqs = [
        SecretRequest("api", SecretKind.BEARER, {"value": API_VALUE.encode()}, allowed_hosts=(LOCAL_API,)),
        SecretRequest(
            "key",
            SecretKind.API_KEY,
            {"value": KEY_VALUE.encode()},
            Injection(InjectionTarget.HEADER, "X-Api-Key"),
            allowed_hosts=(LOCAL_API,),
        ),
    ]
    for i in range(2, n):
        host = (f"api{i}.example.com",)
        token = secrets.token_urlsafe(24).encode()
        if i % 4 == 0:
            reqs.append(SecretRequest(f"bearer-{i}", SecretKind.BEARER, {"value": token}, allowed_hosts=host))
        elif i % 4 == 1:
            query = Injection(InjectionTarget.QUERY, "api_key")
            reqs.append(SecretRequest(f"query-{i}", SecretKind.API_KEY, {"value": token}, query, host))
        elif i % 4 == 2:
            parts = {"username": f"user{i}".encode(), "password": token}
            reqs.append(SecretRequest(f"basic-{i}", SecretKind.BASIC, parts, allowed_hosts=host))
        else:
            reqs.append(SecretRequest(f"generic-{i}", SecretKind.GENERIC, {"value": token}))
    return reqs


def make_vault(state_dir: Path, reqs: list[SecretRequest], key_source: str, kdf: str = "argon2id") -> Config:
    cfg = Config(state_dir=state_dir, vault=VaultConfig(key_source=key_source, kdf=kdf))
    if key_source == "passphrase":
        os.environ[PASSPHRASE_ENV] = PASSPHRASE
    vault = Vault.open(cfg)
    for req in reqs:
        vault.put(req)
    return cfg


# ---------------------------------------------------------------- 1. vault open


def bench_open(cfg: Config, n: int, plaintext: Path, reps: int) -> tuple[list[float], list[float], list[float]]:
    """Vault.open; with a passphrase, its KDF alone; the baseline's json.load: in turn, under the same conditions."""
    passphrase = cfg.vault.key_source == "passphrase"
    kdf = read_header(cfg.vault_path)[0].key.kdf
    opens, kdfs, loads = [], [], []
    for i in range(reps + 2):
        if passphrase:
            os.environ[PASSPHRASE_ENV] = PASSPHRASE  # Vault.open takes it out of the environment each time
        t0 = time.perf_counter()
        vault = Vault.open(cfg)
        dt_open = ms_since(t0)
        assert len(vault.names()) == n and PASSPHRASE_ENV not in os.environ
        if passphrase:
            t0 = time.perf_counter()
            derive_key(PASSPHRASE.encode(), kdf)
            dt_kdf = ms_since(t0)
        t0 = time.perf_counter()
        with plaintext.open() as f:
            doc = json.load(f)
        dt_load = ms_since(t0)
        assert len(doc) == n
        if i >= 2:
            opens.append(dt_open)
            loads.append(dt_load)
            if passphrase:
                kdfs.append(dt_kdf)
    return opens, kdfs, loads


def bench_redactor_build(reqs: list[SecretRequest], reps: int) -> list[float]:
    """The part of every open that builds the redactor from the values (as Vault does)."""
    pairs = [(r.name, v) for r in reqs for k, v in r.values.items() if k not in PUBLIC_PARTS]
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        Redactor(pairs)
        out.append(ms_since(t0))
    return out


def section_open(root: Path, reqs: list[SecretRequest], reps_fast: int, reps_kdf: int) -> str:
    n = len(reqs)
    plaintext = root / "plaintext-secrets.json"
    plaintext.write_text(
        json.dumps(
            {
                r.name: {
                    "kind": r.kind.value,
                    "values": {k: v.decode() for k, v in r.values.items()},
                    "allowed_hosts": list(r.allowed_hosts),
                }
                for r in reqs
            }
        )
    )
    build = f"{pct(bench_redactor_build(reqs, reps_kdf), 0.5):.1f}"
    rows = []
    for label, source, kdf in KEY_SOURCES:
        progress(f"vault open: {label} ...")
        cfg = make_vault(root / f"open-{source}-{kdf}", reqs, source, kdf)
        passphrase = source == "passphrase"
        opens, kdfs, loads = bench_open(cfg, n, plaintext, reps_kdf if passphrase else reps_fast)
        rows.append(
            [
                label,
                p50_p99(opens),
                f"{pct(kdfs, 0.5):.1f}" if passphrase else "-",
                build,
                p50_p99(loads, 3),
                f"{pct(opens, 0.5) / pct(loads, 0.5):,.0f}x",
                "~50-100 ms" if passphrase else "-",
            ]
        )
    line = (
        f"Vault.open of a vault holding {n} secrets (file read, key from its source, AES-256-GCM open, decode, "
        "redactor built), in-process, warm page cache; baseline: json.load of a plaintext file of the same "
        f"{n} secrets (the GoEx prototype's way). Each run times an open, then the KDF alone (passphrase), then "
        f"the baseline. {CORES} cores; {reps_fast} runs ({reps_kdf} with a passphrase)."
    )
    return section(
        "1. Vault open",
        line,
        table(
            [
                "key source",
                "open p50 / p99 (ms)",
                "of which KDF p50 (ms)",
                "of which redactor build p50 (ms)",
                "baseline: plaintext json.load p50 / p99 (ms)",
                "open / baseline (p50)",
                "target",
            ],
            "lrrrrrr",
            rows,
        ),
    )


# ---------------------------------------------------------------- 2. per request, in-process


def response_body(size: int) -> bytes:
    """JSON lines like an API's answer, with the bearer value echoed back once (as httpbin /headers does)."""
    rng = random.Random(1)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    lines: list[bytes] = []
    total = 0
    i = 0
    while total < size:
        item: dict[str, Any] = {"id": i, "sha": rng.randbytes(20).hex(), "text": " ".join(rng.choices(words, k=8))}
        if i == 200:
            item["authorization"] = f"Bearer {API_VALUE}"
        line = json.dumps(item).encode() + b"\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)[:size]


@dataclass
class RequestTimes:
    base: list[float]
    inject: list[float]
    redact: list[float]
    total: list[float]


def bench_request_path(vault: Vault, reps: int, chunk: int) -> RequestTimes:
    grant = EgressGrant("bench", secrets=("api", "key"))
    url = "http://127.0.0.1:8080/v1/items?page=2"
    target = parse_url(url)
    req = Request(
        "GET",
        url,
        [
            (b"host", b"127.0.0.1:8080"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            (b"connection", b"keep-alive"),
            (b"user-agent", b"python-httpx/0.28.1"),
            (b"x-api-key", placeholder("key").encode()),
        ],
        b"",
    )
    body = response_body(BODY_BYTES)
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    raw_headers = [
        (b"Server", b"Werkzeug/3.1.9 Python/3.11.2"),
        (b"Date", b"Tue, 24 Nov 2026 12:00:00 GMT"),
        (b"Content-Type", b"application/json"),
        (b"Content-Length", str(len(body)).encode()),
        (b"Access-Control-Allow-Origin", b"*"),
        (b"Access-Control-Allow-Credentials", b"true"),
        (b"Connection", b"close"),
    ]
    times = RequestTimes([], [], [], [])
    for i in range(reps + 20):
        # Baseline: the request and the body passed through untouched (copied only).
        t0 = time.perf_counter()
        headers_copy = list(req.headers)
        passed = [bytes(memoryview(c)) for c in chunks]
        base = ms_since(t0)
        assert headers_copy and b"".join(passed) == body
        # goex: what Exchange.run / _relay do per request, minus the I/O.
        t0 = time.perf_counter()
        outgoing = decide(vault, grant, target, req)
        t1 = time.perf_counter()
        redactor = vault.redactor
        out_headers = response_headers(raw_headers, redactor)
        stream = redactor.stream()
        parts = [stream.feed(c) for c in chunks]
        parts.append(stream.flush())
        t2 = time.perf_counter()
        if i == 0:
            sent = dict(outgoing.headers)
            assert sent[b"Authorization"] == f"Bearer {API_VALUE}".encode(), sent
            assert sent[b"x-api-key"] == KEY_VALUE.encode()
            assert set(outgoing.secrets_used) == {"api", "key"} and out_headers
            redacted = b"".join(parts)
            assert API_VALUE.encode() not in redacted and b"Bearer [secret:api]" in redacted
        if i >= 20:
            times.base.append(base)
            times.inject.append((t1 - t0) * 1000)
            times.redact.append((t2 - t1) * 1000)
            times.total.append((t2 - t0) * 1000)
    return times


def section_request_path(vaults: dict[int, Vault], reps: int, chunk: int) -> str:
    rows = []
    for n, vault in vaults.items():
        progress(f"per-request injection + redaction, {n} secrets ...")
        t = bench_request_path(vault, reps, chunk)
        rows.append(
            [
                f"{n} ({len(vault.redactor)} forms)",
                p50_p99(t.base, 3),
                f"{pct(t.inject, 0.5):.3f}",
                f"{pct(t.redact, 0.5):.3f}",
                p50_p99(t.total, 3),
                added(t.total, t.base, 3),
            ]
        )
    line = (
        f"Per request, in-process (no I/O): policy.decide for a GET with 2 declared secrets (Authorization added, "
        f"an X-Api-Key placeholder filled), then 7 response headers and a {BODY_BYTES // 1024} KiB JSON body "
        f"(the bearer value echoed once) redacted through vault.redactor.stream() in {chunk // 1024} KiB chunks "
        "(the proxy's upstream read size); baseline: the same headers and body copied, untouched. "
        f"{CORES} cores; {reps} runs. Target: < 0.5 ms added."
    )
    return section(
        "2. Injection + redaction per request (64 KiB response)",
        line,
        table(
            [
                "secrets in vault (redacted forms)",
                "baseline copy p50 / p99 (ms)",
                "inject (decide) p50 (ms)",
                "redact (headers + body) p50 (ms)",
                "inject + redact p50 / p99 (ms)",
                "added p50 / p99 (ms)",
            ],
            "lrrrrr",
            rows,
        ),
    )


# ---------------------------------------------------------------- 3. end to end through a route


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Upstream:
    """httpbin, answering 401 to a request without the bearer value (so every 200 proves it arrived)."""

    expected_auth: str
    app: Callable[..., Iterable[bytes]]

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_AUTHORIZATION") != self.expected_auth:
            start_response("401 Unauthorized", [("Content-Type", "text/plain")])
            return [b"no bearer token, or the wrong one\n"]
        return self.app(environ, start_response)


@contextmanager
def serve_thread(expected_auth: str) -> Iterator[int]:
    """The upstream in a thread of this process."""
    logging.getLogger("httpbin.core").setLevel(logging.ERROR)  # "flasgger is not installed", at import
    import httpbin  # type: ignore[import-untyped]  # noqa: PLC0415 - after quietening its logger

    app = Upstream(expected_auth, httpbin.app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def serve_process(expected_auth: str) -> Iterator[int]:
    """The same upstream in a child process (this script with --serve-upstream), so it holds no GIL of ours."""
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(expected_auth + "\n")
        child.stdin.flush()
        port = int(child.stdout.readline())
        yield port
    finally:
        child.stdin.close()  # the child serves until its stdin ends
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve_upstream_child() -> int:
    expected_auth = sys.stdin.readline().rstrip("\n")
    with serve_thread(expected_auth) as port:
        print(port, flush=True)
        sys.stdin.read()
    return 0


class RouteBackend(httpcore.SyncBackend):
    """Every connection goes to the route's Unix socket (as the sandbox's forwarder does); counted."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = str(socket_path)
        self.connects = 0

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.connects += 1
        return self.connect_unix_socket(self.socket_path, timeout=timeout, socket_options=socket_options)


class RouteTransport(httpx.HTTPTransport):
    """httpx with the route as its HTTP proxy: absolute-form requests (GET http://host:port/path) on its socket."""

    def __init__(self, route: Route, keepalive: bool) -> None:
        super().__init__(trust_env=False)
        self.backend = RouteBackend(route.socket_path)
        self._pool = httpcore.HTTPProxy(
            proxy_url="http://goex-route/",
            max_keepalive_connections=None if keepalive else 0,
            network_backend=self.backend,
        )


def wait_for_route_clients(route: Route, timeout_s: float = 2.0) -> None:
    """Let the proxy see the clients' connections end: Route.close cancels live ones, which Python 3.11's
    asyncio reports as "Exception in callback ... CancelledError" (harmless, but noise here)."""
    deadline = time.monotonic() + timeout_s
    while route._clients and time.monotonic() < deadline:
        time.sleep(0.01)


def measure_end_to_end(proxy: EgressProxy, port: int, reps: int) -> list[list[str]]:
    route = proxy.open_route(EgressGrant("bench", secrets=("api",)))
    fresh = RouteTransport(route, keepalive=False)
    kept = RouteTransport(route, keepalive=True)
    url = f"http://127.0.0.1:{port}/range/{BODY_BYTES}"
    auth = {"Authorization": f"Bearer {API_VALUE}"}
    with (
        # The prototype's client holds the value itself and sends it straight to the server.
        httpx.Client(trust_env=False, limits=httpx.Limits(max_keepalive_connections=0), headers=auth) as direct,
        httpx.Client(trust_env=False, transport=fresh) as via_fresh,
        httpx.Client(trust_env=False, transport=kept) as via_kept,
    ):
        echoed = via_fresh.get(f"http://127.0.0.1:{port}/headers")
        assert echoed.status_code == 200, echoed.text
        assert "Bearer [secret:api]" in echoed.text and API_VALUE not in echoed.text, echoed.text
        clients = {"direct": direct, "fresh": via_fresh, "kept": via_kept}
        times: dict[str, list[float]] = {k: [] for k in clients}
        for i in range(reps + 5):
            for name, client in clients.items():
                t0 = time.perf_counter()
                resp = client.get(url)
                dt = ms_since(t0)
                assert resp.status_code == 200 and len(resp.content) == BODY_BYTES, resp
                if i >= 5:
                    times[name].append(dt)
    wait_for_route_clients(route)
    records = route.records()
    route.close()
    assert len(records) == 2 * (reps + 5) + 1
    assert all(r.decision is Decision.ALLOWED and r.status == 200 and r.secrets_used == ("api",) for r in records)
    runs = reps + 5
    return [
        ["direct: httpx -> werkzeug, a new TCP connection each request", p50_p99(times["direct"]), "-"],
        [
            f"through a route, a new connection each request ({fresh.backend.connects - 1} for {runs})",
            p50_p99(times["fresh"]),
            added(times["fresh"], times["direct"]),
        ],
        [
            f"through a route, the connection to it kept alive ({kept.backend.connects} for {runs})",
            p50_p99(times["kept"]),
            added(times["kept"], times["direct"]),
        ],
    ]


def section_end_to_end(root: Path, vault: Vault, reps: int) -> str:
    rows = []
    # The upstreams listen on loopback, which the proxy reaches only where its config allows that address.
    with EgressProxy(vault, EgressConfig(allowed_addresses=("127.0.0.1/32",)), root / "egress") as proxy:
        for where, serve in (("a thread of this process", serve_thread), ("a child process", serve_process)):
            progress(f"end to end through the proxy, upstream in {where} ...")
            with serve(f"Bearer {API_VALUE}") as port:
                api = SecretRequest(
                    "api", SecretKind.BEARER, {"value": API_VALUE.encode()}, None, (f"http://127.0.0.1:{port}",)
                )
                vault.put(replace(api, overwrite=True))  # plain http goes only to a port named with http://
                rows += [[where, *row] for row in measure_end_to_end(proxy, port, reps)]
    line = (
        f"GET /range/{BODY_BYTES} ({BODY_BYTES // 1024} KiB) from httpbin on werkzeug (threaded, 127.0.0.1; it closes "
        "every connection, so each request is a new upstream connection on both paths) with httpx, until the whole "
        "body is read: direct, the client setting the bearer header itself, vs through a real EgressProxy route "
        "(absolute-form request on its Unix socket) that checks the grant, adds the declared bearer secret (the "
        "upstream answers 401 without it), streams the response redacted and records each exchange; the vault "
        "holds 10 secrets. The fair comparison is the new-connection row (no keep-alive on either side). With "
        "the upstream in a thread, httpbin generates the body in Python under the GIL that the proxy thread needs "
        "too; the child-process rows show the cost without that contention. "
        f"{CORES} cores; {reps} requests per row, interleaved."
    )
    return section(
        "3. End to end: GET 64 KiB, direct vs through the egress proxy",
        line,
        table(["upstream in", "path", "p50 / p99 (ms)", "added p50 / p99 (ms)"], "llrr", rows),
    )


# ---------------------------------------------------------------- main


def section(title: str, line: str, body: str) -> str:
    return f"## {title}\n\n{line}\n\n{body}\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--secrets", type=int, default=50, help="secrets in the vault for the open benchmark")
    p.add_argument("--reps-open", type=int, default=300, help="runs of fast opens and of the baseline")
    p.add_argument("--reps-kdf", type=int, default=50, help="runs of passphrase opens")
    p.add_argument("--reps-request", type=int, default=2000)
    p.add_argument("--reps-e2e", type=int, default=200)
    p.add_argument("--chunk", type=int, default=PROXY_CHUNK, help="body chunk size for section 2")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("vault_results.md"))
    p.add_argument("--serve-upstream", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_upstream:
        return serve_upstream_child()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="goex-vbench-") as tmp:
        root = Path(tmp)
        reqs = secret_requests(args.secrets)
        parts = [section_open(root, reqs, args.reps_open, args.reps_kdf)]
        vaults: dict[int, Vault] = {}
        for n in (10, 50):
            cfg = make_vault(root / f"request-{n}", reqs[:n] if n <= len(reqs) else secret_requests(n), "keyfile")
            vaults[n] = Vault.open(cfg)
        parts.append(section_request_path(vaults, args.reps_request, args.chunk))
        parts.append(section_end_to_end(root, vaults[10], args.reps_e2e))
    text = "\n".join(parts)
    publish(text, args.out, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
