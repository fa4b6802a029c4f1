"""The egress proxy: the one way out of a `Network.PROXY` sandbox.

models.py     grants (what an action may reach) and records (what it did)
tls.py        the in-memory CA and per-host leaf certificates for CONNECT tunnels
substitute.py placeholders -> secret values, injection of declared secrets (pure)
policy.py     one request's decision: reachable host, then substitution
upstream.py   the shared httpx client and header filtering
exchange.py   one request, end to end: decide, forward, redact, record
connection.py one client connection: HTTP/1.1 (h11), keep-alive, CONNECT + TLS
proxy.py      `EgressProxy`: the event-loop thread and one Unix-socket `Route` per action
"""
