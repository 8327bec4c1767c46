"""Engine behaviour that ml_bridge.proto specifies and that the SDK work found broken
once: names that would panic the engine, empty and duplicate batches, the name syntax,
and an unspecified dtype constraint. Each case is sent raw, bypassing the SDK's checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest

from mlbridge import InvalidArgument, SessionContext
from mlbridge.errors import BridgeError, error_from_rpc
from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc
from sdk_engine import RunningEngine, address, ctx, engine, engines  # noqa: F401


@pytest.fixture
def stub(address: str) -> Iterator[pb_grpc.MLBridgeStub]:
    with grpc.insecure_channel(address) as channel:
        yield pb_grpc.MLBridgeStub(channel)


def failure(call: Callable[[], object]) -> BridgeError | None:
    try:
        call()
    except grpc.RpcError as error:
        return error_from_rpc(error)
    return None


def integer(value: int) -> pb.Value:
    return pb.Value(int_value=value)


def test_a_long_name_with_multibyte_characters_is_rejected_cleanly(engines: Callable[..., RunningEngine]) -> None:
    running = engines()
    with grpc.insecure_channel(running.address) as channel:
        stub = pb_grpc.MLBridgeStub(channel)
        session_id = stub.InitializeSession(pb.InitializeSessionRequest(), timeout=10).session.session_id
        request = pb.RegisterVariableRequest(
            session_id=session_id, name="€" * 100, type=pb.VARIABLE_TYPE_INTEGER, initial_value=integer(1)
        )
        error = failure(lambda: stub.RegisterVariable(request, timeout=10))
        # This once panicked (slicing inside a character) and poisoned the session.
        alive = failure(lambda: stub.GetSession(pb.GetSessionRequest(session_id=session_id), timeout=10))
    assert isinstance(error, InvalidArgument), error
    assert alive is None, alive


def test_an_empty_batch_is_invalid(ctx: SessionContext, stub: pb_grpc.MLBridgeStub) -> None:
    error = failure(lambda: stub.SetVariables(pb.SetVariablesRequest(session_id=ctx.session_id, atomic=True), timeout=10))
    assert isinstance(error, InvalidArgument), error


def test_duplicate_names_in_a_batch_are_invalid(ctx: SessionContext, stub: pb_grpc.MLBridgeStub) -> None:
    ctx.register_variable("x", "integer", 0)
    writes = [pb.VariableWrite(name="x", value=integer(1)), pb.VariableWrite(name="x", value=integer(2))]
    error = failure(
        lambda: stub.SetVariables(pb.SetVariablesRequest(session_id=ctx.session_id, writes=writes), timeout=10)
    )
    assert isinstance(error, InvalidArgument), error


def test_names_outside_the_proto_syntax_are_invalid(ctx: SessionContext, stub: pb_grpc.MLBridgeStub) -> None:
    for name in ["a*b", "with space", "9lives"]:
        request = pb.RegisterVariableRequest(
            session_id=ctx.session_id, name=name, type=pb.VARIABLE_TYPE_INTEGER, initial_value=integer(1)
        )
        error = failure(lambda: stub.RegisterVariable(request, timeout=10))
        assert isinstance(error, InvalidArgument), (name, error)


def test_an_unspecified_dtype_constraint_means_any_dtype(ctx: SessionContext, stub: pb_grpc.MLBridgeStub) -> None:
    constraints = pb.Constraints()
    constraints.dtype = pb.DTYPE_UNSPECIFIED
    tensor = pb.Value(tensor_value=pb.Tensor(dtype=pb.DTYPE_INT32, shape=[1], data=bytes(4)))
    request = pb.RegisterVariableRequest(
        session_id=ctx.session_id, name="t", type=pb.VARIABLE_TYPE_TENSOR, initial_value=tensor, constraints=constraints
    )
    error = failure(lambda: stub.RegisterVariable(request, timeout=10))
    assert error is None, error


def test_an_oversized_batch_is_refused_with_the_limit(ctx: SessionContext, stub: pb_grpc.MLBridgeStub) -> None:
    ctx.register_variable("x", "integer", 0)
    writes = [pb.VariableWrite(name=f"v{i}", value=integer(i)) for i in range(513)]
    error = failure(lambda: stub.SetVariables(pb.SetVariablesRequest(session_id=ctx.session_id, writes=writes), timeout=10))
    assert isinstance(error, InvalidArgument), error
    assert error.context["limit"] == "512"
