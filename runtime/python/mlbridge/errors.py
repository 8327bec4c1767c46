"""The exception hierarchy: one class per `mlbridge.v1.ErrorKind`, all under `BridgeError`.

Every failed call to the engine carries a serialized `BridgeError` message in the
`grpc-status-details-bin` trailer; `error_from_rpc` decodes it into the matching class.
Errors found by the SDK before sending (type and constraint checks, bad names, bad glob
patterns) use the same classes and the engine's exact messages.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb

__all__ = [
    "AlreadyExists",
    "BridgeError",
    "CallbackError",
    "CallbackNotFound",
    "ConstraintViolation",
    "ErrorKind",
    "FrameworkError",
    "InternalError",
    "InvalidArgument",
    "LockNotHeld",
    "OperationNotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ResourceNotFound",
    "SessionExpired",
    "SessionLimitExceeded",
    "SessionNotFound",
    "Timeout",
    "ToolError",
    "ToolNotFound",
    "TypeMismatch",
    "Unavailable",
    "UnknownError",
    "VariableAlreadyExists",
    "VariableLocked",
    "VariableNotFound",
    "VersionConflict",
    "WatchLagged",
    "WorkerCrashed",
    "WorkerUnavailable",
    "error_for",
    "error_from_proto",
    "error_from_rpc",
]

DETAILS_TRAILER = "grpc-status-details-bin"


class ErrorKind(enum.IntEnum):
    """The category of a failure (`mlbridge.v1.ErrorKind` without its prefix)."""

    UNSPECIFIED = 0
    INVALID_ARGUMENT = 1
    SESSION_NOT_FOUND = 2
    SESSION_EXPIRED = 3
    SESSION_LIMIT_EXCEEDED = 4
    VARIABLE_NOT_FOUND = 5
    VARIABLE_ALREADY_EXISTS = 6
    TYPE_MISMATCH = 7
    CONSTRAINT_VIOLATION = 8
    VERSION_CONFLICT = 9
    VARIABLE_LOCKED = 10
    TOOL_NOT_FOUND = 11
    TOOL_ERROR = 12
    OPERATION_NOT_FOUND = 13
    FRAMEWORK_ERROR = 14
    WORKER_CRASHED = 15
    WORKER_UNAVAILABLE = 16
    CALLBACK_NOT_FOUND = 17
    CALLBACK_ERROR = 18
    RESOURCE_NOT_FOUND = 19
    PAYLOAD_TOO_LARGE = 20
    WATCH_LAGGED = 21
    TIMEOUT = 22
    PERMISSION_DENIED = 23
    UNAVAILABLE = 24
    INTERNAL = 25
    ALREADY_EXISTS = 26
    LOCK_NOT_HELD = 27

    @classmethod
    def from_proto(cls, value: int) -> ErrorKind:
        """The kind for a wire value; kinds this SDK does not know become UNSPECIFIED."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNSPECIFIED


class BridgeError(Exception):
    """A failure reported by the engine (or found by the SDK before sending).

    Attributes:
        kind: the `ErrorKind`; each kind has its own subclass.
        message: the human-readable description (also `str(error)`).
        context: machine-readable details, e.g. ``{"variable": "temp", "constraint": "max"}``.
        remote_type: for failures raised by foreign code, the exception type name.
        remote_traceback: for failures raised by foreign code, the formatted traceback.
        origin: where the error was raised (``"engine"``, ``"worker:<id>"``, ...; empty
            when unknown).
        cause: the wrapped error, if this one wraps another.
        grpc_code: the gRPC status code the error arrived with (`None` when the SDK
            raised it before sending).
    """

    default_kind: ErrorKind = ErrorKind.UNSPECIFIED

    def __init__(
        self,
        message: str,
        *,
        context: Mapping[str, str] | None = None,
        remote_type: str = "",
        remote_traceback: str = "",
        origin: str = "",
        cause: BridgeError | None = None,
        grpc_code: grpc.StatusCode | None = None,
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = self.default_kind
        self.message = message
        self.context: dict[str, str] = dict(context or {})
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
        self.origin = origin
        self.cause = cause
        self.grpc_code = grpc_code
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, context={self.context!r})"

    def to_proto(self) -> pb.BridgeError:
        """This error as the wire message."""
        message = pb.BridgeError(
            kind=pb.ErrorKind.ValueType(int(self.kind)),
            message=self.message,
            context=self.context,
            remote_type=self.remote_type,
            remote_traceback=self.remote_traceback,
            origin=self.origin,
        )
        if self.cause is not None:
            message.cause.CopyFrom(self.cause.to_proto())
        return message


class UnknownError(BridgeError):
    """UNSPECIFIED: an unknown or unclassified failure (also a non-OK status without details)."""


class InvalidArgument(BridgeError):
    """INVALID_ARGUMENT: a request field is malformed or inconsistent (see context["field"])."""

    default_kind = ErrorKind.INVALID_ARGUMENT


class SessionNotFound(BridgeError):
    """SESSION_NOT_FOUND: no session with that id exists."""

    default_kind = ErrorKind.SESSION_NOT_FOUND


class SessionExpired(BridgeError):
    """SESSION_EXPIRED: the session existed but its TTL ran out."""

    default_kind = ErrorKind.SESSION_EXPIRED


class SessionLimitExceeded(BridgeError):
    """SESSION_LIMIT_EXCEEDED: the engine's maximum number of live sessions is reached."""

    default_kind = ErrorKind.SESSION_LIMIT_EXCEEDED


class VariableNotFound(BridgeError):
    """VARIABLE_NOT_FOUND: no variable with that name in the session."""

    default_kind = ErrorKind.VARIABLE_NOT_FOUND


class VariableAlreadyExists(BridgeError):
    """VARIABLE_ALREADY_EXISTS: a variable with that name is already registered."""

    default_kind = ErrorKind.VARIABLE_ALREADY_EXISTS


class TypeMismatch(BridgeError):
    """TYPE_MISMATCH: the value does not match the declared type (context "expected", "actual")."""

    default_kind = ErrorKind.TYPE_MISMATCH


class ConstraintViolation(BridgeError):
    """CONSTRAINT_VIOLATION: the value breaks a rule (context "constraint" and "limit")."""

    default_kind = ErrorKind.CONSTRAINT_VIOLATION


class VersionConflict(BridgeError):
    """VERSION_CONFLICT: `expected_version` did not match the current version."""

    default_kind = ErrorKind.VERSION_CONFLICT


class VariableLocked(BridgeError):
    """VARIABLE_LOCKED: an optimization lock holds the variable."""

    default_kind = ErrorKind.VARIABLE_LOCKED


class ToolNotFound(BridgeError):
    """TOOL_NOT_FOUND: no tool with that name is visible to the session."""

    default_kind = ErrorKind.TOOL_NOT_FOUND


class ToolError(BridgeError):
    """TOOL_ERROR: the tool ran and failed."""

    default_kind = ErrorKind.TOOL_ERROR


class OperationNotFound(BridgeError):
    """OPERATION_NOT_FOUND: unknown framework or operation."""

    default_kind = ErrorKind.OPERATION_NOT_FOUND


class FrameworkError(BridgeError):
    """FRAMEWORK_ERROR: a framework operation or resource method ran and failed."""

    default_kind = ErrorKind.FRAMEWORK_ERROR


class WorkerCrashed(BridgeError):
    """WORKER_CRASHED: the worker died while handling the call; side effects are unknown."""

    default_kind = ErrorKind.WORKER_CRASHED


class WorkerUnavailable(BridgeError):
    """WORKER_UNAVAILABLE: no healthy worker could take the call; safe to retry."""

    default_kind = ErrorKind.WORKER_UNAVAILABLE


class CallbackNotFound(BridgeError):
    """CALLBACK_NOT_FOUND: no callback with that name or id is registered."""

    default_kind = ErrorKind.CALLBACK_NOT_FOUND


class CallbackError(BridgeError):
    """CALLBACK_ERROR: the callback failed or its endpoint could not be reached."""

    default_kind = ErrorKind.CALLBACK_ERROR


class ResourceNotFound(BridgeError):
    """RESOURCE_NOT_FOUND: no resource with that id in the session."""

    default_kind = ErrorKind.RESOURCE_NOT_FOUND


class PayloadTooLarge(BridgeError):
    """PAYLOAD_TOO_LARGE: a message or value exceeds the size limit (context "limit_bytes")."""

    default_kind = ErrorKind.PAYLOAD_TOO_LARGE


class WatchLagged(BridgeError):
    """WATCH_LAGGED: a watcher fell behind, or asked to resume from a sequence no longer retained."""

    default_kind = ErrorKind.WATCH_LAGGED


class Timeout(BridgeError):
    """TIMEOUT: the call exceeded its deadline."""

    default_kind = ErrorKind.TIMEOUT


class PermissionDenied(BridgeError):
    """PERMISSION_DENIED: the caller may not perform this action."""

    default_kind = ErrorKind.PERMISSION_DENIED


class Unavailable(BridgeError):
    """UNAVAILABLE: the engine or a dependency is temporarily unavailable; safe to retry."""

    default_kind = ErrorKind.UNAVAILABLE


class InternalError(BridgeError):
    """INTERNAL: a bug or broken invariant in the engine, a worker or the SDK."""

    default_kind = ErrorKind.INTERNAL


class AlreadyExists(BridgeError):
    """ALREADY_EXISTS: a tool, callback or other registration already exists."""

    default_kind = ErrorKind.ALREADY_EXISTS


class LockNotHeld(BridgeError):
    """LOCK_NOT_HELD: a lock token is unknown, expired, or does not cover the variable."""

    default_kind = ErrorKind.LOCK_NOT_HELD


_CLASSES: Mapping[ErrorKind, type[BridgeError]] = MappingProxyType(
    {
        cls.default_kind: cls
        for cls in (
            UnknownError,
            InvalidArgument,
            SessionNotFound,
            SessionExpired,
            SessionLimitExceeded,
            VariableNotFound,
            VariableAlreadyExists,
            TypeMismatch,
            ConstraintViolation,
            VersionConflict,
            VariableLocked,
            ToolNotFound,
            ToolError,
            OperationNotFound,
            FrameworkError,
            WorkerCrashed,
            WorkerUnavailable,
            CallbackNotFound,
            CallbackError,
            ResourceNotFound,
            PayloadTooLarge,
            WatchLagged,
            Timeout,
            PermissionDenied,
            Unavailable,
            InternalError,
            AlreadyExists,
            LockNotHeld,
        )
    }
)


def error_class(kind: ErrorKind) -> type[BridgeError]:
    """The exception class raised for `kind`."""
    return _CLASSES[kind]


def error_for(kind: ErrorKind, message: str, **context: Any) -> BridgeError:
    """A new error of `kind`; keyword arguments become context entries (as strings)."""
    return _CLASSES[kind](message, context={key: str(value) for key, value in context.items()})


def error_from_proto(error: pb.BridgeError, grpc_code: grpc.StatusCode | None = None) -> BridgeError:
    """The exception for a wire `BridgeError` (its cause chain included)."""
    kind = ErrorKind.from_proto(error.kind)
    cause = error_from_proto(error.cause) if error.HasField("cause") else None
    return _CLASSES[kind](
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
    return _CLASSES[kind](
        f"{name}: {details}" if details else name,
        context={"grpc_code": name},
        grpc_code=code,
    )
