"""The one place where domain errors become gRPC status codes.

Unexpected exceptions are logged with their traceback under an incident id; the client
gets INTERNAL with that id and never the traceback. Every detail is bounded, whatever input it
quotes: a status message travels in a header, and gRPC drops a call whose headers pass 8-16 KiB.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from goexd.diskspace import is_out_of_space
from goexd.domain import errors
from goexd.domain.names import utf8_text

log = logging.getLogger("goexd.server")

TextRedactor = Callable[[str], str]

# A status message's UTF-8 bytes; percent-encoded on the wire (up to 3x), it stays under gRPC's 8 KiB soft limit.
MAX_DETAIL_BYTES = 2048
# Redaction runs on this much of a message: far more than is kept, so no secret is cut before it is redacted.
_REDACTED_CHARS = 64 * 1024
TRUNCATED = "… [truncated]"
OUT_OF_SPACE = (
    "out of disk space (incident {incident}; the goexd log names the file): free space where goexd keeps its state "
    "and your workspaces, then retry"
)

STATUS_OF: dict[type[errors.GoexError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.InternalError: grpc.StatusCode.INTERNAL,
}


def status_of(exc: errors.GoexError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INTERNAL


def detail(message: str, redact: TextRedactor) -> str:
    """The status message of an error: redacted, then cut to MAX_DETAIL_BYTES (saying so)."""
    # A name's undecodable byte (a lone surrogate) becomes \xHH, as goexd shows names everywhere.
    data = utf8_text(redact(message[:_REDACTED_CHARS])).encode("utf-8")
    if len(data) <= MAX_DETAIL_BYTES and len(message) <= _REDACTED_CHARS:
        return data.decode("utf-8")
    room = MAX_DETAIL_BYTES - len(TRUNCATED.encode())
    return data[:room].decode("utf-8", "ignore") + TRUNCATED


def _abort(context: grpc.ServicerContext, method: str, exc: BaseException, redact: TextRedactor) -> None:
    if isinstance(exc, errors.GoexError):
        code = status_of(exc)
        message = detail(str(exc), redact)
        if code is grpc.StatusCode.INTERNAL:
            log.error("%s: %s", method, message)
        context.abort(code, message)
    incident = uuid.uuid4().hex[:12]
    if is_out_of_space(exc):  # a full disk where no layer said so: still not a bug of goexd's
        log.warning("%s: out of disk space (incident %s): %s", method, incident, exc)
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, OUT_OF_SPACE.format(incident=incident))
    log.error("%s failed (incident %s)", method, incident, exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident}); see the goexd log")


def _wrap_unary(
    fn: Callable[[Any, grpc.ServicerContext], Any], method: str, redact: TextRedactor
) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            _abort(context, method, exc, redact)

    return handler


def _wrap_stream(
    fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]], method: str, redact: TextRedactor
) -> Callable[..., Any]:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            _abort(context, method, exc, redact)

    return handler


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises a plain Exception after setting the status; let it through untouched.
    return type(exc) is Exception and not exc.args


class ErrorInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Maps errors to status codes; every message passes the vault's redactor on its way out."""

    def __init__(self, redact: TextRedactor = lambda text: text) -> None:
        self.redact = redact
        # Per method, its wrapped handler: built on its first call, as services are fixed once serving
        # (an unknown method is not kept: any name can be asked for).
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = continuation(details)
            if handler is None:
                return None
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, self.redact),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, self.redact),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
