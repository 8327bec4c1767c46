"""The exception hierarchy: one class per ErrorKind, decoded from the BridgeError in the
`grpc-status-details-bin` trailer (with every field), classified by status code when the
details are missing, and every kind the engine produces today crossing the wire."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

import mlbridge
from mlbridge import BridgeError, Constraints, ErrorKind, SessionContext
from mlbridge.errors import error_class, error_from_proto, error_from_rpc, error_to_proto
from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc
from sdk_engine import RunningEngine, address, ctx, engine, engines, raw  # noqa: F401

# The status code of each kind, as ml_bridge.proto documents it.
CODES = {
    "UNSPECIFIED": "UNKNOWN", "INVALID_ARGUMENT": "INVALID_ARGUMENT", "SESSION_NOT_FOUND": "NOT_FOUND",
    "SESSION_EXPIRED": "NOT_FOUND", "SESSION_LIMIT_EXCEEDED": "RESOURCE_EXHAUSTED",
    "VARIABLE_NOT_FOUND": "NOT_FOUND", "VARIABLE_ALREADY_EXISTS": "ALREADY_EXISTS",
    "TYPE_MISMATCH": "INVALID_ARGUMENT", "CONSTRAINT_VIOLATION": "INVALID_ARGUMENT", "VERSION_CONFLICT": "ABORTED",
    "VARIABLE_LOCKED": "FAILED_PRECONDITION", "TOOL_NOT_FOUND": "NOT_FOUND", "TOOL_ERROR": "UNKNOWN",
    "OPERATION_NOT_FOUND": "NOT_FOUND", "FRAMEWORK_ERROR": "UNKNOWN", "WORKER_CRASHED": "INTERNAL",
    "WORKER_UNAVAILABLE": "UNAVAILABLE", "CALLBACK_NOT_FOUND": "NOT_FOUND", "CALLBACK_ERROR": "UNKNOWN",
    "RESOURCE_NOT_FOUND": "NOT_FOUND", "PAYLOAD_TOO_LARGE": "RESOURCE_EXHAUSTED", "WATCH_LAGGED": "OUT_OF_RANGE",
    "TIMEOUT": "DEADLINE_EXCEEDED", "PERMISSION_DENIED": "PERMISSION_DENIED", "UNAVAILABLE": "UNAVAILABLE",
    "INTERNAL": "INTERNAL", "ALREADY_EXISTS": "ALREADY_EXISTS", "LOCK_NOT_HELD": "FAILED_PRECONDITION",
    "CALLBACK_UNAVAILABLE": "UNAVAILABLE", "MEMORY_BUDGET_EXCEEDED": "RESOURCE_EXHAUSTED",
    "VARIABLE_IN_USE": "FAILED_PRECONDITION", "UNAUTHENTICATED": "UNAUTHENTICATED",
}  # fmt: skip


def test_one_class_per_error_kind() -> None:
    wire = {name.removeprefix("ERROR_KIND_"): number for name, number in pb.ErrorKind.items()}
    assert {kind.name: kind.value for kind in ErrorKind} == wire
    assert set(CODES) == set(wire)
    classes = {error_class(kind) for kind in ErrorKind}
    assert len(classes) == len(ErrorKind)
    for kind in ErrorKind:
        cls = error_class(kind)
        assert issubclass(cls, BridgeError) and cls.__name__ in mlbridge.__all__
        assert cls("m").kind is kind
    for name in [
        "SessionNotFound", "SessionExpired", "VariableNotFound", "VariableAlreadyExists", "ConstraintViolation",
        "TypeMismatch", "VersionConflict", "ToolNotFound", "ToolError", "WatchLagged", "PayloadTooLarge",
        "InvalidArgument", "SessionLimitExceeded", "WorkerCrashed",
    ]:  # fmt: skip
        assert issubclass(getattr(mlbridge, name), BridgeError)


class FailingServer(pb_grpc.MLBridgeServicer):
    """A Python gRPC server that fails Ping the way a worker relays a Python exception."""

    def __init__(self, details: bytes | None, code: grpc.StatusCode) -> None:
        self.details = details
        self.code = code

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:  # noqa: N802
        if self.details is not None:
            context.set_trailing_metadata((("grpc-status-details-bin", self.details),))
        context.abort(self.code, "ignored when details are present")


@pytest.fixture
def failing() -> Iterator[Callable[[bytes | None, grpc.StatusCode], pb_grpc.MLBridgeStub]]:
    servers: list[grpc.Server] = []
    channels: list[grpc.Channel] = []

    def serve(details: bytes | None, code: grpc.StatusCode) -> pb_grpc.MLBridgeStub:
        server = grpc.server(futures.ThreadPoolExecutor(2))
        pb_grpc.add_MLBridgeServicer_to_server(FailingServer(details, code), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        channels.append(channel)
        return pb_grpc.MLBridgeStub(channel)

    yield serve
    for channel in channels:
        channel.close()
    for server in servers:
        server.stop(None)


def test_every_field_of_a_bridge_error_is_decoded(failing: Callable[..., pb_grpc.MLBridgeStub]) -> None:
    remote = pb.BridgeError(
        kind=pb.ERROR_KIND_TOOL_ERROR,
        message="tool `search` failed: ValueError: empty query",
        context={"tool": "search", "worker_id": "w-1"},
        remote_type="ValueError",
        remote_traceback='Traceback (most recent call last):\n  File "tools.py", line 3\nValueError: empty query',
        origin="worker:w-1",
        cause=pb.BridgeError(kind=pb.ERROR_KIND_CALLBACK_ERROR, message="metric failed", origin="callback:metric"),
    )
    stub = failing(remote.SerializeToString(), grpc.StatusCode.UNKNOWN)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Ping(pb.PingRequest(), timeout=10)
    error = error_from_rpc(raised.value)
    assert isinstance(error, mlbridge.ToolError)
    assert (error.kind, error.message, error.context) == (ErrorKind.TOOL_ERROR, remote.message, dict(remote.context))
    assert (error.remote_type, error.remote_traceback, error.origin) == (
        "ValueError", remote.remote_traceback, "worker:w-1"
    )
    assert error.grpc_code == grpc.StatusCode.UNKNOWN
    assert isinstance(error.cause, mlbridge.CallbackError) and error.cause.origin == "callback:metric"
    assert error.__cause__ is error.cause
    assert str(error) == remote.message
    assert error_to_proto(error) == remote


def test_a_status_without_details_is_classified_by_code(failing: Callable[..., pb_grpc.MLBridgeStub]) -> None:
    for code, cls in [
        (grpc.StatusCode.UNAVAILABLE, mlbridge.Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, mlbridge.Timeout),
        (grpc.StatusCode.INTERNAL, mlbridge.UnknownError),
        (grpc.StatusCode.NOT_FOUND, mlbridge.UnknownError),
    ]:
        stub = failing(None, code)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Ping(pb.PingRequest(), timeout=10)
        error = error_from_rpc(raised.value)
        assert type(error) is cls, code
        assert error.grpc_code == code
        assert error.message == f"{error.context['grpc_code']}: ignored when details are present"
    garbage = failing(b"\xff\xff not a message", grpc.StatusCode.UNAVAILABLE)
    with pytest.raises(grpc.RpcError) as raised:
        garbage.Ping(pb.PingRequest(), timeout=10)
    assert type(error_from_rpc(raised.value)) is mlbridge.Unavailable


def test_unknown_kinds_from_a_newer_engine_are_unspecified() -> None:
    error = error_from_proto(pb.BridgeError(kind=pb.ErrorKind.ValueType(999), message="from the future"))
    assert type(error) is mlbridge.UnknownError and error.message == "from the future"


def test_a_deadline_is_a_timeout(address: str) -> None:
    # Long enough to open the session on a loaded machine, far shorter than the sleep.
    with SessionContext(address, timeout=1.0) as ctx:
        started = time.monotonic()
        with pytest.raises(mlbridge.Timeout) as raised:
            ctx.tools.sleep(ms=5000)
        assert time.monotonic() - started < 4
    assert raised.value.grpc_code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_unimplemented_rpcs_have_no_details(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            channel.unary_unary(f"/{pb.DESCRIPTOR.services_by_name['MLBridge'].full_name}/NoSuchMethod")(
                b"", timeout=10
            )
    error = error_from_rpc(raised.value)
    assert type(error) is mlbridge.UnknownError and error.context["grpc_code"] == "Unimplemented"


def raw_tool_call(address: str, session_id: str, tool: str) -> BridgeError:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.MLBridgeStub(channel)
        try:
            stub.ExecuteTool(pb.ExecuteToolRequest(session_id=session_id, tool_name=tool), timeout=10)
        except grpc.RpcError as failed:
            return error_from_rpc(failed)
    raise AssertionError("the call succeeded")


def trigger(kind: str, ctx: SessionContext, raw: SessionContext, address: str, engines: Callable[..., RunningEngine]) -> None:
    """Makes the engine fail with `kind` (client-side checks are bypassed through `raw`)."""
    if kind == "INVALID_ARGUMENT":
        raw.list_variables("[")
    elif kind == "SESSION_NOT_FOUND":
        with SessionContext(address, ctx.session_id, token=ctx.token, keep_session=True) as other:
            other.close(cleanup=True)
        ctx.get_session()
    elif kind == "SESSION_EXPIRED":
        running = engines("--sweep-interval-ms", "20")
        with SessionContext(running.address, ttl=0.2, keep_session=True) as short:
            time.sleep(0.5)
            short.get_session()
    elif kind == "SESSION_LIMIT_EXCEEDED":
        running = engines("--max-sessions", "1")
        with SessionContext(running.address), SessionContext(running.address):
            pass
    elif kind == "VARIABLE_NOT_FOUND":
        raw.get_variable("nope")
    elif kind == "VARIABLE_ALREADY_EXISTS":
        raw.register_variable("x", "integer", 1)
        raw.register_variable("x", "integer", 1)
    elif kind == "TYPE_MISMATCH":
        raw.register_variable("x", "integer", "one")
    elif kind == "CONSTRAINT_VIOLATION":
        raw.register_variable("x", "integer", 5, Constraints(max=1))
    elif kind == "VERSION_CONFLICT":
        raw.register_variable("x", "integer", 1)
        raw.set_variable("x", 2, expected_version=5)
    elif kind == "TOOL_NOT_FOUND":
        raise raw_tool_call(address, ctx.session_id, "no_such_tool")
    elif kind == "TOOL_ERROR":
        raw.tools.fail(message="boom")
    elif kind == "PAYLOAD_TOO_LARGE":
        running = engines("--max-value-bytes", "64")
        with SessionContext(running.address, validate=False) as small:
            small.register_variable("blob", "bytes", b"x" * 100)
    elif kind == "WATCH_LAGGED":
        names = [f"v{i}" for i in range(10)]
        for name in names:
            raw.register_variable(name, "integer", 0)
        for step in range(410):  # 4,100 changes: more than the 4,096 the engine retains
            raw.set_variables({name: step for name in names})
        next(raw.watch(from_version=1))
    else:
        raise AssertionError(kind)


ENGINE_KINDS = [
    "INVALID_ARGUMENT", "SESSION_NOT_FOUND", "SESSION_EXPIRED", "SESSION_LIMIT_EXCEEDED", "VARIABLE_NOT_FOUND",
    "VARIABLE_ALREADY_EXISTS", "TYPE_MISMATCH", "CONSTRAINT_VIOLATION", "VERSION_CONFLICT", "TOOL_NOT_FOUND",
    "TOOL_ERROR", "PAYLOAD_TOO_LARGE", "WATCH_LAGGED",
]  # fmt: skip


@pytest.mark.parametrize("kind", ENGINE_KINDS)
def test_engine_errors_cross_the_wire(
    kind: str, ctx: SessionContext, raw: SessionContext, address: str, engines: Callable[..., RunningEngine]
) -> None:
    with pytest.raises(BridgeError) as raised:
        trigger(kind, ctx, raw, address, engines)
    error = raised.value
    assert type(error) is error_class(ErrorKind[kind])
    assert error.kind is ErrorKind[kind]
    assert error.grpc_code == getattr(grpc.StatusCode, CODES[kind])
    assert error.message and not error.message.endswith(".")
