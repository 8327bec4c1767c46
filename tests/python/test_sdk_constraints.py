"""Types and constraints from the SDK's side: the engine judges every value (each rule,
type and message is a case of tests/conformance/values.json, run by
test_engine_conformance.py); the SDK passes its answers on, accepts constraints in the
forms a Python user writes, and guards the transport size before sending."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from mlbridge import (
    BridgeError,
    ConstraintViolation,
    Constraints,
    Dtype,
    InvalidArgument,
    PayloadTooLarge,
    SessionContext,
    Tensor,
    TypeMismatch,
)
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc
from sdk_engine import RunningEngine, address, ctx, engine, engines  # noqa: F401

# Single-variable RPCs run as one-write batches in the engine, which tags their errors with
# `batch_failed_at`; it says nothing about the value, so comparisons leave it out.
IGNORED_CONTEXT = {"batch_failed_at"}


def same_error(client: BridgeError, engine: BridgeError) -> None:
    assert type(engine) is type(client)
    assert engine.message == client.message
    strip = lambda context: {k: v for k, v in context.items() if k not in IGNORED_CONTEXT}  # noqa: E731
    assert strip(engine.context) == strip(client.context)
    assert client.grpc_code is None, "the SDK's own check should have answered"
    assert engine.grpc_code is not None, "the engine should have answered"


def expect_both(
    ctx: SessionContext, raw: SessionContext, action: Callable[[SessionContext], object], kind: type[BridgeError]
) -> BridgeError:
    with pytest.raises(kind) as client_side:
        action(ctx)
    with pytest.raises(kind) as engine_side:
        action(raw)
    same_error(client_side.value, engine_side.value)
    return client_side.value


def test_bad_values_are_judged_by_the_engine_through_the_sdk(ctx: SessionContext) -> None:
    # Every rule, type and message is in tests/conformance/values.json (run by
    # test_engine_conformance.py); this checks that the SDK passes the engine's answer on.
    ctx.register_variable("v", "float", 1.0, Constraints(max=2))
    with pytest.raises(ConstraintViolation) as raised:
        ctx.set_variable("v", 2.5)
    assert raised.value.message == "variable `v`: 2.5 is above the maximum 2"
    assert raised.value.context["constraint"] == "max"
    assert raised.value.grpc_code is not None, "the engine answered"
    assert ctx.describe_variable("v").version == 1, "nothing was written"
    with pytest.raises(TypeMismatch) as mismatch:
        ctx.register_variable("w", "integer", 1.5)
    assert mismatch.value.message == "variable `w` expects integer, got float"
    with pytest.raises(InvalidArgument) as tensor:
        ctx.register_variable("t", "tensor", Tensor(Dtype.FLOAT32, (2, 2), bytes(12)))
    assert tensor.value.message == "variable `t`: tensor data has 12 bytes, expected 16 for shape [2, 2] of float32"


def test_nullable_accepts_none(ctx: SessionContext) -> None:
    ctx.register_variable("v", "integer", None, Constraints(nullable=True, min=0))
    ctx.set_variable("v", 3)
    ctx.set_variable("v", None)
    assert ctx["v"] is None


def test_an_invalid_pattern_is_judged_by_the_engine(ctx: SessionContext) -> None:
    # Only the engine knows Rust regex syntax, so the SDK leaves pattern compilation to it.
    with pytest.raises(InvalidArgument) as raised:
        ctx.register_variable("v", "string", "x", Constraints(pattern="("))
    assert raised.value.grpc_code is not None
    assert raised.value.message.startswith("constraints of `v`: invalid pattern `(`: ")
    assert raised.value.context["field"] == "constraints.pattern"


def test_unknown_type_names(ctx: SessionContext) -> None:
    with pytest.raises(InvalidArgument, match="unknown variable type 'double'"):
        ctx.register_variable("v", "double", 1.0)


def test_payload_limit(engines: Callable[..., RunningEngine]) -> None:
    running = engines("--max-value-bytes", "1024")
    with SessionContext(running.address, max_value_bytes=1024) as ctx, SessionContext(
        running.address, ctx.session_id, token=ctx.token, validate=False
    ) as raw:
        ctx.register_variable("blob", "bytes", b"x" * 1000)
        error = expect_both(ctx, raw, lambda c: c.set_variable("blob", b"x" * 2000), PayloadTooLarge)
        assert error.message == "value of variable `blob` is 2003 bytes, over the limit of 1024 bytes"
        assert error.context == {"variable": "blob", "limit_bytes": "1024"}
        expect_both(ctx, raw, lambda c: c.register_variable("big", "bytes", b"x" * 5000), PayloadTooLarge)
        assert ctx["blob"] == b"x" * 1000


def test_a_stale_cached_schema_never_rejects_a_valid_write(address: str) -> None:
    with SessionContext(address, watch_cache=False, cache_ttl=60) as ctx:
        ctx.register_variable("v", "integer", 1, Constraints(max=10))
        with SessionContext(address, ctx.session_id, token=ctx.token) as other:
            other.delete_variable("v")
            other.register_variable("v", "string", "now a string")
        ctx.set_variable("v", "fine")  # the cached schema says integer: re-read, then accepted
        assert ctx.describe_variable("v").value == "fine"


def test_constraints_as_a_dict_or_keyword_arguments(ctx: SessionContext) -> None:
    as_class = ctx.register_variable("a", "float", 1.0, Constraints(min=0.0, max=2.0))
    as_dict = ctx.register_variable("b", "float", 1.0, {"min": 0.0, "max": 2.0})
    as_keywords = ctx.register_variable("c", "float", 1.0, min=0.0, max=2.0)
    merged = ctx.register_variable("d", "float", 1.0, {"min": 0.0}, max=2.0)
    assert as_class.constraints == as_dict.constraints == as_keywords.constraints == merged.constraints
    assert as_keywords.constraints == Constraints(min=0.0, max=2.0)
    for name in "abcd":
        with pytest.raises(ConstraintViolation, match="is above the maximum 2"):
            ctx.set_variable(name, 2.5)
    with pytest.raises(TypeError, match="unknown constraint 'maximum'"):
        ctx.register_variable("e", "float", 1.0, maximum=2.0)
    with pytest.raises(TypeError, match="unknown constraint 'maxx'"):
        ctx.register_variable("e", "float", 1.0, {"maxx": 2.0})
    assert "e" not in ctx


def test_every_write_is_one_round_trip_even_on_a_cold_cache(address: str) -> None:
    calls: list[str] = []

    class Count(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            calls.append(details.method.rsplit("/", 1)[-1])
            return continuation(details, request)

    with SessionContext(address) as owner:
        owner.register_variable("t", "float", 0.5, min=0.0, max=1.0)
        owner.register_variable("n", "integer", 1)
        with SessionContext(address, owner.session_id, token=owner.token, cache=False) as ctx:
            channel = ctx._channel  # noqa: SLF001 - the test counts the calls on the wire
            assert channel is not None
            ctx._stub = pb_grpc.MLBridgeStub(grpc.intercept_channel(channel, Count()))  # noqa: SLF001
            ctx.set_variable("t", 0.75)
            assert calls == ["SetVariable"]
            calls.clear()
            ctx.register_variable("e", "embedding", [1.0, 2.0])
            assert calls == ["RegisterVariable"]
            calls.clear()
            ctx.set_variables({"t": 0.25, "n": 2})
            assert calls == ["SetVariables"]
            calls.clear()
            with pytest.raises(ConstraintViolation):
                ctx.set_variable("t", 5.0)
            assert calls == ["SetVariable"], "a refused write is one round trip too"
