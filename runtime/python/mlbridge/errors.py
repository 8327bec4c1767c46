"""The exception hierarchy: one class per `mlbridge.v1.ErrorKind`, all under `BridgeError`.

The kinds, the classes (with their docstrings), the kind -> class map and the kind -> gRPC
code map are generated from `ml_bridge.proto` into `mlbridge_proto.ml_bridge_facts` and
re-exported here; this module adds only behaviour: decoding a failed RPC's
`grpc-status-details-bin` trailer (`error_from_rpc`), converting to and from the wire
message (`error_from_proto`, `error_to_proto`) and building an error of a kind
(`error_for`).
"""

from __future__ import annotations

from typing import Any

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_facts as _facts
from mlbridge_proto.ml_bridge_facts import *  # noqa: F403 (ErrorKind, BridgeError, one class per kind)


__all__ = [
    "UnconvertibleValue",
    "clip",
    "error_class",
    "error_for",
    "error_from_proto",
    "error_from_rpc",
    "error_to_proto",
    "send_error",
]
# Every generated name (the kinds, their classes and the kind maps): a kind added to the
# proto is exported here, and from `mlbridge`, with no edit.
__all__ += _facts.__all__

DETAILS_TRAILER = "grpc-status-details-bin"

# Bounds on error text, from the schema (`ErrorTextLimit` in ml_bridge.proto).
QUOTE_CHARS = pb.ERROR_TEXT_LIMIT_QUOTE
CONTEXT_CHARS = pb.ERROR_TEXT_LIMIT_CONTEXT
MESSAGE_CHARS = pb.ERROR_TEXT_LIMIT_MESSAGE
TRACEBACK_CHARS = pb.ERROR_TEXT_LIMIT_TRACEBACK


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` as an error message quotes it: whole up to `limit` characters (by default the
    schema's quote limit), else its start and a marker saying how much was left out, in
    `limit` characters all told (so clipping twice changes nothing)."""
    if len(text) <= limit:
        return text
    kept = limit - len(f"…[{len(text)} more characters]")
    return f"{text[:kept]}…[{len(text) - kept} more characters]"


def _clip_start(text: str, limit: int) -> str:
    """The end of `text` after a marker, in `limit` characters all told, if it is longer."""
    if len(text) <= limit:
        return text
    kept = limit - len(f"[{len(text)} characters left out]…")
    return f"[{len(text) - kept} characters left out]…{text[len(text) - kept:]}"


class UnconvertibleValue(InvalidArgument, TypeError):
    """A Python object that has no `mlbridge.v1.Value` (raised before anything is sent).
    Also a `TypeError`, as Python code expects for a value of the wrong type."""


def error_class(kind: ErrorKind) -> type[BridgeError]:
    """The exception class raised for `kind`."""
    return ERROR_KIND_CLASSES[kind]


def error_for(kind: ErrorKind, message: str, **context: Any) -> BridgeError:
    """A new error of `kind`; keyword arguments become context entries (as strings)."""
    return ERROR_KIND_CLASSES[kind](message, context={key: str(value) for key, value in context.items()})


def error_to_proto(error: BridgeError, *, with_cause: bool = True) -> pb.BridgeError:
    """`error` as the wire message, its text bounded as the schema says (`ErrorTextLimit`):
    message, context, type and origin clipped, the traceback's end kept, one cause at most."""
    message = pb.BridgeError(
        kind=error.kind.to_proto(),
        message=clip(error.message, MESSAGE_CHARS),
        context={clip(key, CONTEXT_CHARS): clip(value, CONTEXT_CHARS) for key, value in error.context.items()},
        remote_type=clip(error.remote_type, CONTEXT_CHARS),
        remote_traceback=_clip_start(error.remote_traceback, TRACEBACK_CHARS),
        origin=clip(error.origin, CONTEXT_CHARS),
    )
    if with_cause and error.cause is not None:
        message.cause.CopyFrom(error_to_proto(error.cause, with_cause=False))
    return message


def send_error(context: grpc.ServicerContext, error: BridgeError) -> None:
    """Ends a call served by this process (a worker, a callback server) with `error`: its
    kind's status code, its bounded message, and the serialized `BridgeError` in the
    ``grpc-status-details-bin`` trailer."""
    wire = error_to_proto(error)
    context.set_trailing_metadata(((DETAILS_TRAILER, wire.SerializeToString()),))
    context.set_code(ERROR_KIND_GRPC_CODES[error.kind])
    context.set_details(wire.message)


def error_from_proto(error: pb.BridgeError, grpc_code: grpc.StatusCode | None = None) -> BridgeError:
    """The exception for a wire `BridgeError` (its cause chain included)."""
    kind = ErrorKind.from_proto(error.kind)
    cause = error_from_proto(error.cause) if error.HasField("cause") else None
    return ERROR_KIND_CLASSES[kind](
        error.message or kind.name.lower().replace("_", " "),
        context=dict(error.context),
        remote_type=error.remote_type,
        remote_traceback=error.remote_traceback,
        origin=error.origin,
        cause=cause,
        grpc_code=grpc_code,
    )


def _camel(code: grpc.StatusCode) -> str:
    return "".join(part.capitalize() for part in code.name.split("_"))


def error_from_rpc(error: grpc.RpcError) -> BridgeError:
    """The exception for a failed gRPC call: the `BridgeError` in the status details when the
    server sent one, otherwise one classified by status code (UNAVAILABLE -> `Unavailable`,
    DEADLINE_EXCEEDED -> `Timeout`, anything else -> `UnknownError`)."""
    code: grpc.StatusCode | None = None
    details = ""
    trailers: Any = ()
    if isinstance(error, grpc.Call) or isinstance(error, grpc.aio.AioRpcError):
        code = error.code()
        details = error.details() or ""
        trailers = error.trailing_metadata() or ()
    for key, value in trailers:
        if key == DETAILS_TRAILER and isinstance(value, bytes):
            try:
                decoded = pb.BridgeError.FromString(value)
            except Exception:  # a malformed trailer is classified by code below
                break
            return error_from_proto(decoded, code)
    if code == grpc.StatusCode.UNAVAILABLE:
        kind = ErrorKind.UNAVAILABLE
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        kind = ErrorKind.TIMEOUT
    else:
        kind = ErrorKind.UNSPECIFIED
    name = _camel(code) if code is not None else "Unknown"
    return ERROR_KIND_CLASSES[kind](
        f"{name}: {details}" if details else name,
        context={"grpc_code": name},
        grpc_code=code,
    )
