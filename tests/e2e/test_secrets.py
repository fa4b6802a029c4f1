"""The vault through the real daemon: put/list/delete/rotate, bad input, restarts, refusal to start."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

import goex
from goex.v1 import actions_pb2 as apb
from goex.v1 import secrets_pb2 as spb
from goex.v1 import types_pb2 as pb
from tests.daemon_process import DaemonProcess
from tests.e2e.rpc import open_fs, status_of

TOKEN = "ghp_e2eTokenValue123"


def put(d: DaemonProcess, name: str, value: bytes, overwrite: bool = False, **info: object) -> spb.SecretInfo:
    req = spb.PutSecretRequest(
        info=spb.SecretInfo(name=name, kind=spb.SECRET_KIND_BEARER, **info),  # type: ignore[arg-type]
        value=value,
        overwrite=overwrite,
    )
    return d.secrets.PutSecret(req).info


def names(d: DaemonProcess) -> list[str]:
    return [s.name for s in d.secrets.ListSecrets(spb.ListSecretsRequest()).secrets]


def test_put_list_delete(daemon: DaemonProcess) -> None:
    with goex.Client(daemon.socket) as client:
        info = client.put_secret("gh", TOKEN, kind="bearer", allowed_hosts=["api.github.com"])
        assert info.name == "gh" and tuple(info.allowed_hosts) == ("api.github.com",)
        assert info.injection is not None and info.injection.text == "header Authorization: Bearer {value}"
        client.put_secret(
            "svc", None, kind="basic", values={"username": "bob", "password": "pw-secret-1"}, allowed_hosts=["x.org"]
        )
        assert [s.name for s in client.list_secrets()] == ["gh", "svc"]
        client.delete_secret("gh")
        assert [s.name for s in client.list_secrets()] == ["svc"]
    listed = daemon.secrets.ListSecrets(spb.ListSecretsRequest())
    assert list(listed.secrets[0].parts) == ["password", "username"]
    assert listed.secrets[0].injection.header.template == "Basic {basic}"
    raw = listed.SerializeToString()
    assert b"pw-secret-1" not in raw and TOKEN.encode() not in raw


def test_bad_input_changes_nothing(daemon: DaemonProcess) -> None:
    put(daemon, "gh", TOKEN.encode(), allowed_hosts=["api.github.com"])
    vault_before = (daemon.state_dir / "vault.bin").read_bytes()
    cases = [
        (lambda: put(daemon, "gh", b"another-value-1"), grpc.StatusCode.ALREADY_EXISTS, "--overwrite"),
        (lambda: put(daemon, "../etc", b"another-value-1"), grpc.StatusCode.INVALID_ARGUMENT, "info.name:"),
        (lambda: put(daemon, "a\x07b", b"another-value-1"), grpc.StatusCode.INVALID_ARGUMENT, "control character"),
        (lambda: put(daemon, "", b"another-value-1"), grpc.StatusCode.INVALID_ARGUMENT, "info.name:"),
        (lambda: put(daemon, "x", b""), grpc.StatusCode.INVALID_ARGUMENT, "value:"),
        (
            lambda: put(daemon, "x", b"another-value-1", allowed_hosts=["https://h/"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "info.allowed_hosts[0]",
        ),
        (
            lambda: daemon.secrets.DeleteSecret(spb.DeleteSecretRequest(name="nope")),
            grpc.StatusCode.NOT_FOUND,
            "secret 'nope' not found",
        ),
        (
            lambda: daemon.secrets.DeleteSecret(spb.DeleteSecretRequest(name="a/b")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "path separator",
        ),
        (
            lambda: daemon.secrets.RotateVaultKey(spb.RotateVaultKeyRequest(new_passphrase=b"pass phrase")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "new random key",
        ),
    ]
    for call, code, words in cases:
        got, msg = status_of(call)
        assert got == code and words in msg, (got, msg)
    assert names(daemon) == ["gh"]
    assert (daemon.state_dir / "vault.bin").read_bytes() == vault_before


def test_an_error_message_never_carries_a_value(daemon: DaemonProcess) -> None:
    put(daemon, "gh", TOKEN.encode())
    # The value used as a name: the refusal quotes the name, which must come back redacted.
    code, msg = status_of(lambda: daemon.secrets.DeleteSecret(spb.DeleteSecretRequest(name=TOKEN)))
    assert code == grpc.StatusCode.NOT_FOUND
    assert TOKEN not in msg and "[secret:gh]" in msg


def test_concurrent_puts_from_many_clients_lose_no_entry(daemon: DaemonProcess) -> None:
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            with goex.Client(daemon.socket) as client:
                for i in range(8):
                    client.put_secret(f"k{t}-{i}", f"value-{t}-{i}-abcdef", allowed_hosts=["h.example"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(names(daemon)) == 96
    daemon.stop()
    daemon.start()
    assert len(names(daemon)) == 96


def test_rotation_then_restart_keeps_every_secret(daemon: DaemonProcess) -> None:
    put(daemon, "gh", TOKEN.encode())
    key_before = (daemon.state_dir / "vault.key").read_bytes()
    daemon.secrets.RotateVaultKey(spb.RotateVaultKeyRequest())
    assert (daemon.state_dir / "vault.key").read_bytes() != key_before
    daemon.stop()
    daemon.start()
    assert names(daemon) == ["gh"]


def _start_fails(root: Path) -> str:
    d = DaemonProcess(root)
    with pytest.raises(RuntimeError) as exc:
        d.start(timeout=20)
    return str(exc.value)


def test_the_daemon_refuses_to_start_with_a_wrong_key_or_a_tampered_vault(daemon: DaemonProcess) -> None:
    put(daemon, "gh", TOKEN.encode())
    daemon.stop()
    vault = daemon.state_dir / "vault.bin"
    key = daemon.state_dir / "vault.key"
    good_key, good_vault = key.read_bytes(), vault.read_bytes()

    subprocess.run(
        [sys.executable, "-c", f"import base64,os; open({str(key)!r},'wb').write(base64.b64encode(os.urandom(32)))"],
        check=True,
    )
    assert "wrong key" in _start_fails(daemon.root)
    assert vault.read_bytes() == good_vault

    key.write_bytes(good_key)
    tampered = bytearray(good_vault)
    tampered[-3] ^= 0x40
    vault.write_bytes(bytes(tampered))
    assert "failed authentication" in _start_fails(daemon.root)
    assert vault.read_bytes() == bytes(tampered)

    vault.write_bytes(good_vault)
    daemon.start()
    assert names(daemon) == ["gh"]


def _rss_kib(d: DaemonProcess) -> int:
    assert d.proc is not None
    status = Path(f"/proc/{d.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def _put_injected(d: DaemonProcess, name: str, injection: spb.Injection) -> spb.SecretInfo:
    info = spb.SecretInfo(name=name, kind=spb.SECRET_KIND_API_KEY, allowed_hosts=["api.example.com"])
    info.injection.CopyFrom(injection)
    return d.secrets.PutSecret(spb.PutSecretRequest(info=info, value=b"templated-value-1")).info


def test_templates_are_literal_text_and_fields_only(daemon: DaemonProcess) -> None:
    """`{value:>100000000}` (a format spec) once grew goexd by 1.5 GB per action; `{` answered INTERNAL."""
    vault_before = (daemon.state_dir / "vault.bin").read_bytes()
    rss_before = _rss_kib(daemon)
    header = lambda t: spb.Injection(header=spb.HeaderInjection(name="X-Key", template=t))  # noqa: E731
    query = lambda t: spb.Injection(query=spb.QueryInjection(param="key", template=t))  # noqa: E731
    for injection, fld in [
        (header("{value:>100000000}"), "info.injection.header.template"),
        (header("{"), "info.injection.header.template"),
        (header("Bearer {value"), "info.injection.header.template"),
        (header("{value!r}"), "info.injection.header.template"),
        (header("{value.__class__}"), "info.injection.header.template"),
        (header("x" * 1_000_000 + "{value}"), "info.injection.header.template"),
        (query("{value:^999999}"), "info.injection.query.template"),
        (query("}"), "info.injection.query.template"),
    ]:
        code, msg = status_of(lambda i=injection: _put_injected(daemon, "tpl", i))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith(f"{fld}: template "), (code, msg[:300])
        assert len(msg) < 1000, len(msg)  # the input is quoted cut short
    assert names(daemon) == [] and (daemon.state_dir / "vault.bin").read_bytes() == vault_before
    assert _rss_kib(daemon) - rss_before < 64 * 1024
    # Literal text, {value} and escaped braces are what a template is.
    ok = _put_injected(daemon, "tpl", header("{{v1}} Key={value}"))
    assert ok.injection.header.template == "{{v1}} Key={value}"


def test_a_template_stored_before_the_check_keeps_goexd_up_and_refuses_only_its_secret(
    daemon: DaemonProcess, workspace: Path
) -> None:
    from goexd import config
    from goexd.domain.secrets import Injection, InjectionTarget, Secret, SecretKind
    from goexd.vault.vault import Vault

    put(daemon, "gh", TOKEN.encode(), allowed_hosts=["api.github.com"])
    daemon.stop()
    # As an older goexd would have stored it (test-only: the vault opened with the daemon's key file).
    vault = Vault.open(config.load(None, {"state_dir": str(daemon.state_dir)}, {}))
    old = Secret(
        "old",
        SecretKind.API_KEY,
        {"value": b"old-value-123"},
        Injection(InjectionTarget.HEADER, "X-Key", "{value:>100000000}"),
        ("api.github.com",),
        0.0,
        0.0,
    )
    vault._commit({**vault._secrets, "old": old}, [])
    daemon.start()
    listed = {s.name: s for s in daemon.secrets.ListSecrets(spb.ListSecretsRequest()).secrets}
    assert sorted(listed) == ["gh", "old"] and listed["gh"].problem == ""
    assert "format specs" in listed["old"].problem and "store it again" in listed["old"].problem
    session = open_fs(daemon, workspace)

    def submit(secret: str) -> object:
        spec = pb.ActionSpec(python=pb.PythonAction(code="print(1)"), egress=pb.Egress(secrets=[secret]))
        return daemon.actions.SubmitAction(apb.SubmitActionRequest(session_id=session.id, spec=spec), timeout=60)

    code, msg = status_of(lambda: submit("old"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "secret 'old' cannot be used: its template" in msg
    assert submit("gh").action.state == pb.ACTION_STATE_EXECUTED  # type: ignore[attr-defined]
    put(daemon, "old", b"old-value-123", overwrite=True, allowed_hosts=["api.github.com"])  # the fix: store it again
    assert {s.name: s.problem for s in daemon.secrets.ListSecrets(spb.ListSecretsRequest()).secrets}["old"] == ""


def test_error_details_quote_inputs_cut_short(daemon: DaemonProcess) -> None:
    """Error details once echoed up to 10 MB of input."""
    huge = "a/" * 500_000
    for call, fld in [
        (lambda: put(daemon, huge, b"another-value-1"), "info.name: "),
        (lambda: put(daemon, "x", b"another-value-1", allowed_hosts=["h" * 1_000_000]), "info.allowed_hosts[0]: "),
        (
            lambda: _put_injected(daemon, "x", spb.Injection(header=spb.HeaderInjection(name="X " * 500_000))),
            "info.injection.header.name: ",
        ),
    ]:
        code, msg = status_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and msg.startswith(fld) and len(msg) < 1000, (code, msg[:200])
        assert "truncated" in msg or "longer than" in msg
    assert names(daemon) == []
