"""Type and constraint checks: every rule is enforced by the SDK before sending, with the
engine's exact error class, message and context, and the engine says the same when the
SDK's checks are off (`raw`: a `validate=False` client on the same session)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from mlbridge import (
    BridgeError,
    ConstraintViolation,
    Constraints,
    Dtype,
    Embedding,
    InvalidArgument,
    ModuleRef,
    PayloadTooLarge,
    SessionContext,
    Tensor,
    TypeMismatch,
)
from sdk_engine import RunningEngine, address, ctx, engine, engines, raw  # noqa: F401

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


def i32(*values: int) -> bytes:
    return b"".join(v.to_bytes(4, "little", signed=True) for v in values)


# (type, constraints, a valid value, an invalid value, error class, message, rule)
VIOLATIONS: list[tuple[str, Constraints, Any, Any, type[BridgeError], str, str | None]] = [
    ("float", Constraints(min=0), 0.0, -0.5, ConstraintViolation, "-0.5 is below the minimum 0", "min"),
    ("float", Constraints(max=2), 2.0, 2.5, ConstraintViolation, "2.5 is above the maximum 2", "max"),
    ("float", Constraints(min=0, min_exclusive=True), 0.1, 0.0, ConstraintViolation,
     "0 is not above the exclusive minimum 0", "min"),
    ("float", Constraints(max=1.5, max_exclusive=True), 1.0, 1.5, ConstraintViolation,
     "1.5 is not below the exclusive maximum 1.5", "max"),
    ("float", Constraints(min=0.1), 0.1, 1e-7, ConstraintViolation, "0.0000001 is below the minimum 0.1", "min"),
    ("float", Constraints(max=1e20), 1e20, 1.5e20, ConstraintViolation,
     "150000000000000000000 is above the maximum 100000000000000000000", "max"),
    ("float", Constraints(min=-1, max=1), 0.5, float("nan"), ConstraintViolation, "nan is below the minimum -1", "min"),
    ("float", Constraints(max=1), 1, float("inf"), ConstraintViolation, "inf is above the maximum 1", "max"),
    ("integer", Constraints(min=1, max=10), 10, 11, ConstraintViolation, "11 is above the maximum 10", "max"),
    ("integer", Constraints(min=-5), -5, -6, ConstraintViolation, "-6 is below the minimum -5", "min"),
    ("string", Constraints(choices=["a", "b"]), "a", "c", ConstraintViolation, "`c` is not one of: a, b", "choices"),
    ("choice", Constraints(choices=["x", "y"]), "y", "z", ConstraintViolation, "`z` is not one of: x, y", "choices"),
    ("string", Constraints(min_length=2), "ab", "é", ConstraintViolation,
     "length 1 is below the minimum length 2", "min_length"),
    ("string", Constraints(max_length=3), "ééé", "abcd", ConstraintViolation,
     "length 4 is above the maximum length 3", "max_length"),
    ("string", Constraints(pattern=r"[a-z]+\d"), "abc1", "abc", ConstraintViolation,
     r"`abc` does not match the pattern `[a-z]+\d`", "pattern"),
    ("string", Constraints(pattern="a|b"), "a", "ab", ConstraintViolation,
     "`ab` does not match the pattern `a|b`", "pattern"),
    ("bytes", Constraints(max_length=2), b"ab", b"abc", ConstraintViolation,
     "length 3 is above the maximum length 2", "max_length"),
    ("bytes", Constraints(min_length=1), b"a", b"", ConstraintViolation,
     "length 0 is below the minimum length 1", "min_length"),
    ("list", Constraints(min_length=1), [1], [], ConstraintViolation, "length 0 is below the minimum length 1", "min_length"),
    ("list", Constraints(max_items=2), [1, 2], [1, 2, 3], ConstraintViolation, "3 items exceed the maximum of 2", "max_items"),
    ("map", Constraints(max_items=1), {"a": 1}, {"a": 1, "b": 2}, ConstraintViolation,
     "2 items exceed the maximum of 1", "max_items"),
    ("embedding", Constraints(dimensions=3), Embedding([1, 2, 3]), Embedding([1, 2]), ConstraintViolation,
     "embedding has 2 dimensions, expected 3", "dimensions"),
    ("tensor", Constraints(dtype="float32"), Tensor(Dtype.FLOAT32, (1,), i32(0)), Tensor(Dtype.INT32, (1,), i32(1)),
     ConstraintViolation, "tensor dtype int32 is not the required float32", "dtype"),
    ("tensor", Constraints(shape=[2, 0]), Tensor(Dtype.INT32, (2, 1), i32(1, 2)), Tensor(Dtype.INT32, (3, 1), i32(1, 2, 3)),
     ConstraintViolation, "tensor shape [3, 1] does not match the required shape [2, 0]", "shape"),
    ("tensor", Constraints(shape=[2]), Tensor(Dtype.INT32, (2,), i32(1, 2)), Tensor(Dtype.INT32, (1, 2), i32(1, 2)),
     ConstraintViolation, "tensor shape [1, 2] does not match the required shape [2]", "shape"),
    ("module", Constraints(allowed_modules=["dspy.Predict"]), ModuleRef("dspy.Predict"),
     ModuleRef("dspy.ChainOfThought"), ConstraintViolation,
     "module `dspy.ChainOfThought` is not one of the allowed modules: dspy.Predict", "allowed_modules"),
]  # fmt: skip

MISMATCHES: list[tuple[str, Constraints, Any, Any, type[BridgeError], str, str | None]] = [
    ("integer", Constraints(), 1, 1.5, TypeMismatch, "variable `v` expects integer, got float", None),
    ("boolean", Constraints(), True, 1, TypeMismatch, "variable `v` expects boolean, got integer", None),
    ("string", Constraints(), "s", b"s", TypeMismatch, "variable `v` expects string, got bytes", None),
    ("float", Constraints(), 1.0, None, TypeMismatch, "variable `v` expects float, got null", None),
    ("float", Constraints(), 1.0, "1.0", TypeMismatch, "variable `v` expects float, got string", None),
    ("choice", Constraints(choices=["a"]), "a", 1, TypeMismatch, "variable `v` expects choice, got integer", None),
    ("module", Constraints(), ModuleRef("m"), "m", TypeMismatch, "variable `v` expects module, got string", None),
    ("embedding", Constraints(), Embedding([1]), Tensor(Dtype.INT32, (1,), i32(1)), TypeMismatch,
     "variable `v` expects embedding, got tensor", None),
    ("tensor", Constraints(), Tensor(Dtype.INT32, (1,), i32(1)), [1], TypeMismatch,
     "variable `v` expects tensor, got list", None),
    ("list", Constraints(), [], {"a": 1}, TypeMismatch, "variable `v` expects list, got map", None),
    ("map", Constraints(), {}, [], TypeMismatch, "variable `v` expects map, got list", None),
    ("bytes", Constraints(), b"", "text", TypeMismatch, "variable `v` expects bytes, got string", None),
    ("list", Constraints(element_type="integer"), [1, 2], [1, "x"], TypeMismatch,
     "variable `v[1]` expects integer, got string", None),
    ("list", Constraints(element_type="float"), [1, 2.5], [1.0, None], TypeMismatch,
     "variable `v[1]` expects float, got null", None),
    ("map", Constraints(element_type="float"), {"a": 1}, {"a": 1.0, "b\"\n": "x", "z": "y"}, TypeMismatch,
     'variable `v["b\\"\\n"]` expects float, got string', None),
    ("tensor", Constraints(), Tensor(Dtype.FLOAT32, (2, 2), bytes(16)), Tensor(Dtype.FLOAT32, (2, 2), bytes(12)),
     InvalidArgument, "variable `v`: tensor data has 12 bytes, expected 16 for shape [2, 2] of float32", None),
]  # fmt: skip


def case_id(case: tuple[Any, ...]) -> str:
    return f"{case[0]}-{case[-1] or case[4].__name__}"


@pytest.mark.parametrize("case", VIOLATIONS + MISMATCHES, ids=[case_id(c) for c in VIOLATIONS + MISMATCHES])
def test_bad_values_are_rejected_before_sending_and_by_the_engine(
    ctx: SessionContext, raw: SessionContext, case: tuple[str, Constraints, Any, Any, type[BridgeError], str, str | None]
) -> None:
    type_, constraints, good, bad, kind, message, rule = case
    ctx.register_variable("v", type_, good, constraints)
    error = expect_both(ctx, raw, lambda c: c.set_variable("v", bad), kind)
    expected = message if message.startswith("variable `") else f"variable `v`: {message}"
    assert error.message == expected
    assert error.context["variable"].startswith("v")
    if rule is not None:
        assert error.context["constraint"] == rule
    assert ctx.describe_variable("v").version == 1, "nothing was written"
    # A bad initial value is rejected the same way at registration.
    expect_both(ctx, raw, lambda c: c.register_variable("w", type_, bad, constraints), kind)


def test_nullable_accepts_none(ctx: SessionContext) -> None:
    ctx.register_variable("v", "integer", None, Constraints(nullable=True, min=0))
    ctx.set_variable("v", 3)
    ctx.set_variable("v", None)
    assert ctx["v"] is None


def test_valid_values_pass(ctx: SessionContext) -> None:
    for case in VIOLATIONS:
        type_, constraints, good = case[:3]
        ctx.register_variable("ok", type_, good, constraints)
        ctx.set_variable("ok", good)
        ctx.delete_variable("ok")


# (type, constraints, message after "constraints of `v`: ", field)
BAD_DEFINITIONS: list[tuple[str, Constraints, str, str]] = [
    ("string", Constraints(min=1), "min/max do not apply to string", "min"),
    ("float", Constraints(min_exclusive=True), "min_exclusive needs min", "min_exclusive"),
    ("float", Constraints(max_exclusive=True), "max_exclusive needs max", "max_exclusive"),
    ("float", Constraints(min=3, max=1), "min 3 is greater than max 1", "min"),
    ("float", Constraints(min=0.5, max=0.25), "min 0.5 is greater than max 0.25", "min"),
    ("choice", Constraints(), "a choice variable needs a non-empty list of choices", "choices"),
    ("integer", Constraints(choices=["a"]), "choices do not apply to integer", "choices"),
    ("float", Constraints(min_length=1), "min_length/max_length do not apply to float", "min_length"),
    ("string", Constraints(min_length=5, max_length=2), "min_length 5 is greater than max_length 2", "min_length"),
    ("float", Constraints(pattern="a+"), "pattern does not apply to float", "pattern"),
    ("string", Constraints(dimensions=3), "dimensions do not apply to string", "dimensions"),
    ("embedding", Constraints(dimensions=0), "dimensions must be at least 1", "dimensions"),
    ("list", Constraints(shape=[1]), "shape/dtype do not apply to list", "shape"),
    ("bytes", Constraints(dtype="int8"), "shape/dtype do not apply to bytes", "shape"),
    ("string", Constraints(allowed_modules=["m"]), "allowed_modules do not apply to string", "allowed_modules"),
    ("string", Constraints(element_type="integer"), "element_type/max_items do not apply to string", "element_type"),
    ("tensor", Constraints(max_items=1), "element_type/max_items do not apply to tensor", "element_type"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_DEFINITIONS, ids=[c[2] for c in BAD_DEFINITIONS])
def test_invalid_constraint_definitions(
    ctx: SessionContext, raw: SessionContext, case: tuple[str, Constraints, str, str]
) -> None:
    type_, constraints, detail, field = case
    value = {"choice": "a", "embedding": Embedding([1.0]), "list": [], "bytes": b"", "tensor": Tensor("int8", (), b"\0")}
    error = expect_both(
        ctx, raw, lambda c: c.register_variable("v", type_, value.get(type_, 1.0 if type_ == "float" else "s"), constraints),
        InvalidArgument,
    )
    assert error.message == f"constraints of `v`: {detail}"
    assert error.context == {"field": f"constraints.{field}", "variable": "v"}


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


NAME_RULE = "a name starts with a letter or `_` and continues with letters, digits or `_.:/-`, at most 255 characters"


def test_bad_variable_names(ctx: SessionContext, raw: SessionContext) -> None:
    cases = {
        "": "a variable name cannot be empty",
        "a\nb": f'invalid variable name "a\\nb": {NAME_RULE}',
        "9lives": f'invalid variable name "9lives": {NAME_RULE}',
        "a*b": f'invalid variable name "a*b": {NAME_RULE}',
        "x" * 256: f'invalid variable name "{"x" * 40}...": {NAME_RULE}',
    }
    for name, message in cases.items():
        error = expect_both(ctx, raw, lambda c: c.register_variable(name, "integer", 1), InvalidArgument)
        assert error.message == message
        assert error.context == {"field": "name"}


def test_a_long_multibyte_name_is_rejected_client_side(ctx: SessionContext) -> None:
    with pytest.raises(InvalidArgument) as raised:
        ctx.register_variable("é" * 200, "integer", 1)
    assert raised.value.message == f'invalid variable name "{"é" * 40}...": {NAME_RULE}'


def test_payload_limit(engines: Callable[..., RunningEngine]) -> None:
    running = engines("--max-value-bytes", "1024")
    with SessionContext(running.address, max_value_bytes=1024) as ctx, SessionContext(
        running.address, ctx.session_id, validate=False
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
        with SessionContext(address, ctx.session_id) as other:
            other.delete_variable("v")
            other.register_variable("v", "string", "now a string")
        ctx.set_variable("v", "fine")  # the cached schema says integer: re-read, then accepted
        assert ctx.describe_variable("v").value == "fine"
