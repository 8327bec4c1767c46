"""Engine-native resources through the session's generic API (`create_resource`,
`invoke_resource`, `release_resource`, `resources`), sync and asyncio, against an engine
with a DSPy worker (offline echo LM). The typed proxies are in `mlbridge.native`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sdk_engine import RunningEngine, engine, pool  # noqa: F401

from mlbridge import (
    AsyncSessionContext,
    InvalidArgument,
    OperationNotFound,
    ResourceNotFound,
    SessionContext,
    VariableType,
    WorkerUnavailable,
)
from mlbridge.value_types import Constraints

QUESTION = {"question": "What is the capital of France?"}


@pytest.fixture
def ctx(pool: RunningEngine) -> Iterator[SessionContext]:  # noqa: F811
    with SessionContext(pool.address) as context:
        yield context


def test_a_module_runs_its_operation_with_the_bound_variable(ctx: SessionContext) -> None:
    ctx.register_variable("temperature", VariableType.FLOAT, 0.3, constraints=Constraints(min=0.0, max=2.0))
    module = ctx.create_resource(
        "module",
        "dspy.predict",
        config={"signature": "question -> answer", "max_tokens": 16, "bind": {"temperature": "temperature"}},
        metadata={"purpose": "test"},
    )
    assert (module.kind, module.framework, module.name) == ("module", "dspy", "predict")
    assert module.methods == ("describe", "forward")
    assert module.metadata["purpose"] == "test"

    first = ctx.invoke_resource(module.resource_id, "forward", inputs=QUESTION)
    assert "temperature=0.3" in first["outputs"]["answer"] and "max_tokens=16" in first["outputs"]["answer"]
    ctx.set_variable("temperature", 1.1)
    second = ctx.invoke_resource(module.resource_id, "forward", {"inputs": QUESTION, "max_tokens": 8})
    assert "temperature=1.1" in second["outputs"]["answer"] and "max_tokens=8" in second["outputs"]["answer"]
    assert ctx.invoke_resource(module.resource_id, "describe")["bind"] == {"temperature": "temperature"}

    assert [r.resource_id for r in ctx.resources()] == [module.resource_id]
    assert ctx.get_session().resource_count == 1
    assert ctx.release_resource(module.resource_id) is True
    assert ctx.release_resource(module.resource_id) is False
    assert ctx.resources() == []
    with pytest.raises(ResourceNotFound, match=module.resource_id):
        ctx.invoke_resource(module.resource_id, "forward", inputs=QUESTION)


def test_bad_resources_get_errors_that_name_what_is_wrong(ctx: SessionContext) -> None:
    with pytest.raises(InvalidArgument, match="gadget"):
        ctx.create_resource("gadget", "x")
    with pytest.raises(OperationNotFound, match="fly"):
        ctx.create_resource("module", "fly", framework="dspy")
    with pytest.raises(InvalidArgument, match="colour"):
        ctx.create_resource("module", "dspy.predict", config={"colour": "red"})
    module = ctx.create_resource("module", "dspy.predict", config={"signature": "question -> answer"})
    with pytest.raises(InvalidArgument, match="fly"):
        ctx.invoke_resource(module.resource_id, "fly")


def test_resources_go_with_their_session(pool: RunningEngine) -> None:  # noqa: F811
    with SessionContext(pool.address) as owner, SessionContext(pool.address) as other:
        module = owner.create_resource("module", "dspy.predict", config={"signature": "question -> answer"})
        # Another session does not see it.
        assert other.resources() == []
        with pytest.raises(ResourceNotFound):
            other.invoke_resource(module.resource_id, "forward", inputs=QUESTION)
        session_id = owner.session_id
    with SessionContext(pool.address, session_id=session_id) as rejoined:
        assert rejoined.resources() == []


def test_resources_from_asyncio(pool: RunningEngine) -> None:  # noqa: F811
    async def main() -> None:
        async with AsyncSessionContext(pool.address) as ctx:
            module = await ctx.create_resource("module", "predict", framework="dspy", config={"max_tokens": 4})
            result = await ctx.invoke_resource(
                module.resource_id, "forward", signature="question -> answer", inputs=QUESTION
            )
            assert "max_tokens=4" in result["outputs"]["answer"]
            assert [r.resource_id for r in await ctx.resources()] == [module.resource_id]
            assert await ctx.release_resource(module.resource_id)

    asyncio.run(main())


def test_a_module_needs_workers(engine: RunningEngine) -> None:  # noqa: F811
    with SessionContext(engine.address) as ctx, pytest.raises(WorkerUnavailable, match="dspy.predict"):
        ctx.create_resource("module", "dspy.predict")
