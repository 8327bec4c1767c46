"""Variables through `SessionContext`: versions and optimistic concurrency, item and
attribute access, listing, multi-reads, batches (atomic and not), history and rollback."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from mlbridge import (
    ConstraintViolation,
    Constraints,
    InvalidArgument,
    SessionContext,
    UpdateKind,
    VariableAlreadyExists,
    VariableNotFound,
    VersionConflict,
)
from sdk_engine import RunningEngine, address, ctx, engine, engines, raw  # noqa: F401


def test_versions_count_every_write(ctx: SessionContext) -> None:
    variable = ctx.register_variable("x", "integer", 1, description="a counter", metadata={"unit": "steps"})
    assert (variable.version, variable.description, variable.metadata) == (1, "a counter", {"unit": "steps"})
    assert variable.source.startswith("python:pid-")
    assert ctx.set_variable("x", 2).version == 2
    assert ctx.set_variable("x", 2).version == 3, "an unchanged value is still a new version"
    described = ctx.describe_variable("x")
    assert (described.value, described.version) == (2, 3)
    assert described.updated_at is not None and described.created_at is not None
    assert described.updated_at >= described.created_at


def test_expected_version(ctx: SessionContext) -> None:
    ctx.register_variable("x", "integer", 1)
    ctx.set_variable("x", 2, expected_version=1)
    with pytest.raises(VersionConflict) as raised:
        ctx.set_variable("x", 3, expected_version=1)
    assert raised.value.message == "variable `x` is at version 2, not the expected version 1"
    assert raised.value.context["expected_version"] == "1"
    assert raised.value.context["current_version"] == "2"
    assert ctx["x"] == 2
    with pytest.raises(VersionConflict):
        ctx.delete_variable("x", expected_version=7)
    ctx.delete_variable("x", expected_version=2)


def test_two_clients_race_with_expected_version(address: str, ctx: SessionContext, raw: SessionContext) -> None:
    ctx.register_variable("counter", "integer", 0)
    rounds = 20
    with SessionContext(address, ctx.session_id, token=ctx.token) as a, SessionContext(address, ctx.session_id, token=ctx.token) as b:
        for round_ in range(rounds):
            version = raw.describe_variable("counter").version  # `raw` never caches
            barrier = threading.Barrier(2)
            outcomes: dict[str, object] = {}

            def write(name: str, client: SessionContext, version: int = version) -> None:
                barrier.wait()
                try:
                    outcomes[name] = client.set_variable("counter", round_ + 1, expected_version=version).version
                except VersionConflict as error:
                    outcomes[name] = error

            threads = [threading.Thread(target=write, args=(n, c)) for n, c in (("a", a), ("b", b))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            winners = [o for o in outcomes.values() if isinstance(o, int)]
            losers = [o for o in outcomes.values() if isinstance(o, VersionConflict)]
            assert winners == [version + 1] and len(losers) == 1, outcomes
    assert raw.describe_variable("counter").version == rounds + 1


def test_item_and_attribute_access(ctx: SessionContext) -> None:
    ctx.register_variable("temperature", "float", 0.5)
    ctx.register_variable("model/name", "string", "gpt")
    ctx["temperature"] = 0.75
    assert ctx["temperature"] == 0.75 and ctx.v.temperature == 0.75
    ctx.v.temperature = 1
    assert ctx.v.temperature == 1.0
    assert ctx["model/name"] == "gpt"
    assert "temperature" in ctx and "nope" not in ctx
    assert not hasattr(ctx.v, "nope")
    with pytest.raises(VariableNotFound) as raised:
        ctx.v.nope
    assert raised.value.message == f"variable `nope` not found in session `{ctx.session_id}`"
    assert "temperature" in dir(ctx.v)
    del ctx.v.temperature
    del ctx["model/name"]
    assert ctx.list_variables() == []


def test_register_twice_and_re_register(ctx: SessionContext) -> None:
    ctx.register_variable("x", "integer", 1)
    ctx.set_variable("x", 5)
    with pytest.raises(VariableAlreadyExists) as raised:
        ctx.register_variable("x", "integer", 2)
    assert raised.value.message == f"variable `x` already exists in session `{ctx.session_id}`"
    last = ctx.delete_variable("x")
    assert (last.value, last.version) == (5, 2)
    with pytest.raises(VariableNotFound):
        ctx.get_variable("x")
    again = ctx.register_variable("x", "string", "new")
    assert (again.version, ctx["x"]) == (1, "new")


def test_unknown_variables(ctx: SessionContext) -> None:
    message = f"variable `missing` not found in session `{ctx.session_id}`"
    for action in (
        lambda: ctx.get_variable("missing"),
        lambda: ctx.set_variable("missing", 1),
        lambda: ctx.delete_variable("missing"),
        lambda: ctx.history("missing"),
        lambda: ctx.rollback("missing", 1),
    ):
        with pytest.raises(VariableNotFound) as raised:
            action()
        assert raised.value.message == message
        assert raised.value.context["variable"] == "missing"


def test_list_variables_with_globs(ctx: SessionContext, raw: SessionContext) -> None:
    for name in ["model.temperature", "model.top_p", "optimizer.lr", "beta", "alpha", "a:b"]:
        ctx.register_variable(name, "float", 0.5)
    names = lambda pattern: [v.name for v in ctx.list_variables(pattern)]  # noqa: E731
    assert names("*") == ["a:b", "alpha", "beta", "model.temperature", "model.top_p", "optimizer.lr"]
    assert names("") == names("*")
    assert names("model.*") == ["model.temperature", "model.top_p"]
    assert names("?eta") == ["beta"]
    assert names("[a-b]*") == ["a:b", "alpha", "beta"]
    assert names("[!a-m]*") == ["optimizer.lr"]
    assert names("a\\:b") == ["a:b"]  # an escaped character matches itself
    assert names("a\\*") == []  # names never contain `*`
    assert names("nothing*") == []
    for pattern, detail in [
        ("[abc", "unclosed `[`"),
        ("model\\", "ends with an escape"),
        ("[z-a]", "range `z-a` is reversed"),
        ("[]", "unclosed `[`"),
        ("[a-", "unclosed `[`"),
    ]:
        with pytest.raises(InvalidArgument) as client_side:
            ctx.list_variables(pattern)
        with pytest.raises(InvalidArgument) as engine_side:
            raw.list_variables(pattern)
        expected = f"malformed pattern `{pattern}`: {detail}"
        assert client_side.value.message == engine_side.value.message == expected
        assert client_side.value.context == engine_side.value.context == {"field": "pattern"}
        # The engine is the only judge: both clients carry its answer.
        assert client_side.value.grpc_code is not None and engine_side.value.grpc_code is not None


def test_get_variables(ctx: SessionContext, raw: SessionContext) -> None:
    ctx.register_variable("a", "integer", 1)
    ctx.register_variable("b", "string", "two")
    assert ctx.get_variables(["a", "b", "missing", "a"]) == {"a": 1, "b": "two"}
    assert raw.get_variables(["b", "nope"]) == {"b": "two"}
    assert ctx.get_variables([]) == {}


def test_atomic_set_variables(ctx: SessionContext, raw: SessionContext) -> None:
    ctx.register_variable("a", "integer", 1, Constraints(max=100))
    ctx.register_variable("b", "integer", 1, Constraints(max=100))
    results = ctx.set_variables({"a": 2, "b": 3})
    assert [(r.name, r.version, r.ok) for r in results] == [("a", 2, True), ("b", 2, True)]
    assert results[1].sequence == results[0].sequence + 1
    assert ctx.get_variables(["a", "b"]) == {"a": 2, "b": 3}
    for client in (ctx, raw):
        with pytest.raises(ConstraintViolation) as raised:
            client.set_variables({"a": 50, "b": 1000})
        assert raised.value.message == "variable `b`: 1000 is above the maximum 100"
        assert raised.value.context["batch_failed_at"] == "1 (b)"
        assert raw.get_variables(["a", "b"]) == {"a": 2, "b": 3}, "nothing of a failed atomic batch is applied"
    with pytest.raises(VariableNotFound) as missing:
        ctx.set_variables({"a": 5, "nope": 1})
    assert missing.value.context["batch_failed_at"] == "1 (nope)"
    with pytest.raises(VersionConflict):
        ctx.set_variables({"a": 5, "b": 6}, expected_versions={"b": 1})
    assert ctx.describe_variable("a").version == 2
    assert ctx.set_variables({}) == []


def test_non_atomic_set_variables(ctx: SessionContext, raw: SessionContext) -> None:
    ctx.register_variable("a", "integer", 1, Constraints(max=100))
    ctx.register_variable("b", "integer", 1, Constraints(max=100))
    for client, value in ((ctx, 10), (raw, 20)):
        results = client.set_variables({"a": value, "b": 1000, "c": 1}, atomic=False)
        assert [r.name for r in results] == ["a", "b", "c"]
        assert results[0].ok and not results[1].ok and not results[2].ok
        assert isinstance(results[1].error, ConstraintViolation)
        assert results[1].error.message == "variable `b`: 1000 is above the maximum 100"
        assert isinstance(results[2].error, VariableNotFound)
        assert raw.get_variables(["a", "b"]) == {"a": value, "b": 1}


def test_batch_context_manager(ctx: SessionContext) -> None:
    ctx.register_variable("a", "integer", 1)
    ctx.register_variable("b", "string", "x")
    with ctx.batch() as batch:
        batch["a"] = 2
        batch.set("b", "y", expected_version=1)
        assert batch["a"] == 2 and "b" in batch and len(batch) == 2
        assert ctx["a"] == 1, "nothing is sent before the block ends"
    assert batch.results is not None and all(r.ok for r in batch.results)
    assert (ctx["a"], ctx["b"]) == (2, "y")
    sequence = ctx.get_session().current_sequence
    with pytest.raises(RuntimeError):
        with ctx.batch() as batch:
            batch["a"] = 3
            raise RuntimeError("abandon")
    assert ctx["a"] == 2 and batch.results is None
    with ctx.batch():
        pass
    assert ctx.get_session().current_sequence == sequence, "an abandoned or empty batch sends nothing"
    with pytest.raises(ConstraintViolation):
        ctx.register_variable("c", "integer", 1, Constraints(min=0))
        with ctx.batch() as batch:
            batch["a"] = 4
            batch["c"] = -1
    assert ctx["a"] == 2


def test_history_and_rollback(ctx: SessionContext) -> None:
    ctx.register_variable("lr", "float", 0.1)
    ctx.set_variable("lr", 0.2, metadata={"reason": "step 1"})
    ctx.set_variable("lr", 0.3)
    history = ctx.history("lr")
    assert [(h.version, h.value, h.kind) for h in history] == [
        (3, 0.3, UpdateKind.SET),
        (2, 0.2, UpdateKind.SET),
        (1, 0.1, UpdateKind.REGISTERED),
    ]
    assert history[1].metadata == {"reason": "step 1"}
    assert history[0].timestamp >= history[2].timestamp
    rolled = ctx.rollback("lr", 1, metadata={"reason": "undo"})
    assert (rolled.value, rolled.version) == (0.1, 4)
    assert ctx["lr"] == 0.1
    latest = ctx.history("lr", limit=2)
    assert [(h.version, h.kind, h.restored_from_version) for h in latest] == [
        (4, UpdateKind.ROLLED_BACK, 1),
        (3, UpdateKind.SET, 0),
    ]
    with pytest.raises(VersionConflict):
        ctx.rollback("lr", 2, expected_version=3)
    with pytest.raises(InvalidArgument) as raised:
        ctx.rollback("lr", 99)
    assert raised.value.message == "version 99 of variable `lr` is not retained (retained: 1 to 4)"


def test_history_is_bounded(engines: Callable[..., RunningEngine]) -> None:
    running = engines("--history", "3")
    with SessionContext(running.address) as ctx:
        ctx.register_variable("x", "integer", 0)
        for value in range(1, 6):
            ctx["x"] = value
        assert [h.version for h in ctx.history("x")] == [6, 5, 4]
        with pytest.raises(InvalidArgument) as raised:
            ctx.rollback("x", 2)
        assert raised.value.message == "version 2 of variable `x` is not retained (retained: 4 to 6)"
        assert raised.value.context["oldest_retained_version"] == "4"
        assert ctx.rollback("x", 4).value == 3
