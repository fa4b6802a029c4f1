"""Status details: redacted, then bounded whatever they quote (server/errors.py)."""

from __future__ import annotations

import errno

import grpc
import pytest

from goexd.server.errors import MAX_DETAIL_BYTES, TRUNCATED, _wrap_unary, detail


def test_a_short_message_passes_unchanged() -> None:
    assert detail("resources[0].fs.path: /etc is inside the system tree /etc", str) == (
        "resources[0].fs.path: /etc is inside the system tree /etc"
    )


def test_a_long_message_is_cut_to_the_byte_budget_and_says_so() -> None:
    for filler in ("x", "é", "😀"):  # 1, 2 and 4 bytes a character: never cut inside one
        out = detail("field: " + filler * 10_000_000, str)
        assert len(out.encode()) <= MAX_DETAIL_BYTES and out.endswith(TRUNCATED)
        assert out.startswith("field: " + filler * 10)


def test_redaction_runs_before_the_cut() -> None:
    secret = "s3cr3t-value"

    def redact(text: str) -> str:
        return text.replace(secret, "[REDACTED]")

    out = detail(f"token {secret} " + "z" * 100_000, redact)
    assert secret not in out and "[REDACTED]" in out
    tail = detail("z" * (MAX_DETAIL_BYTES - 20) + secret, redact)  # a secret across the cut is never half shown
    assert "s3cr" not in tail


def test_lone_surrogates_cannot_break_the_status() -> None:
    out = detail("path \udcff here", str)
    out.encode("utf-8")  # gRPC sends the detail as UTF-8
    assert out == "path \\xff here"  # the byte 0xff of a name, shown as goexd shows names (goexd/names.py)


class _Context:
    """What a handler's context does on abort: remember the status, then raise (as grpc's does)."""

    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.status = (code, message)
        raise Exception()


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    def handler(request: object, context: object) -> object:
        raise exc

    context = _Context()
    with pytest.raises(Exception):  # noqa: B017 - the abort's own bare Exception
        _wrap_unary(handler, "/goex.v1.Secrets/PutSecret", str)(None, context)
    assert context.status is not None
    return context.status


def test_a_full_disk_no_layer_reported_is_resource_exhausted_not_internal() -> None:
    code, message = _status_of(OSError(errno.ENOSPC, "No space left on device", "/state/vault.bin.tmp"))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert message.startswith("out of disk space (incident ") and "free space" in message
    assert "/state" not in message  # the file is named in the log only, like any unexpected error's detail


def test_other_unexpected_errors_stay_internal_with_an_incident_only() -> None:
    code, message = _status_of(OSError(errno.EIO, "Input/output error"))
    assert code is grpc.StatusCode.INTERNAL and message.startswith("internal error (incident ")
