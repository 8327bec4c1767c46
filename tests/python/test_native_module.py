"""Engine-native modules from Python (`mlbridge.native.Module`) against a real engine with
Python workers, offline: DSPy calls go to the echo LM, which answers with the settings it
received. A module wraps a manifest operation with its bindings; an optimizer runs it with
each candidate bound before scoring the outputs with a Python metric."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import pytest

from mlbridge import AsyncSessionContext, InvalidArgument, OperationNotFound, SessionContext, bind
from mlbridge.native import AsyncModule, Module, Optimizer, TrialState
from sdk_engine import RunningEngine, pool  # noqa: F401

QUESTION = {"question": "What is 2 + 2?"}


@pytest.fixture
def ctx(pool: RunningEngine) -> Iterator[SessionContext]:  # noqa: F811
    with SessionContext(pool.address) as context:
        context.register_variable("temperature", "float", 0.3, min=0.0, max=2.0)
        context.register_variable("max_tokens", "integer", 64, min=16, max=256)
        yield context


def settings(answer: str) -> tuple[float, int]:
    """The temperature and max_tokens the echo LM says it received."""
    found = re.search(r"temperature=([0-9.]+), max_tokens=([0-9]+)", answer)
    assert found, answer
    return float(found.group(1)), int(found.group(2))


def test_forward_runs_the_operation_with_its_bindings_on_a_worker(ctx: SessionContext) -> None:
    with Module(ctx, "dspy.predict", signature="question -> answer", temperature=bind("temperature"), max_tokens=32) as predict:
        first = predict.forward(inputs=QUESTION)
        assert settings(first["outputs"]["answer"]) == (0.3, 32)
        # Bound: the next call reads the variable's new value.
        ctx.set_variable("temperature", 1.1)
        assert settings(predict(inputs=QUESTION)["outputs"]["answer"]) == (1.1, 32)
        # Arguments override the module's literals.
        assert settings(predict(inputs=QUESTION, max_tokens=48)["outputs"]["answer"]) == (1.1, 48)
        described = predict.describe()
        assert described["framework"] == "dspy" and described["operation"] == "predict"
        assert described["bind"] == {"temperature": "temperature"}
        assert [r.resource_id for r in ctx.resources()] == [predict.id]
    assert ctx.resources() == []


def test_module_configuration_is_checked_at_creation(ctx: SessionContext) -> None:
    with pytest.raises(OperationNotFound):
        Module(ctx, "dspy.no_such_operation", signature="q -> a")
    with pytest.raises(InvalidArgument):
        Module(ctx, "dspy.predict", signature="q -> a", signature_typo=1)
    with pytest.raises(InvalidArgument):
        Module(ctx, "dspy.predict", signature=bind("temperature"))  # not bindable
    assert ctx.get_session().resource_count == 0


def test_an_optimizer_runs_the_module_with_each_candidate(ctx: SessionContext) -> None:
    scored: list[tuple[dict[str, Any], tuple[float, int]]] = []

    def metric(outputs: dict[str, Any], values: dict[str, Any]) -> float:
        temperature, max_tokens = settings(outputs["outputs"]["answer"])
        scored.append((values, (temperature, max_tokens)))
        return -abs(temperature - 0.7) - abs(max_tokens - 128) / 256

    predict = Module(
        ctx,
        "dspy.predict",
        signature="question -> answer",
        inputs=QUESTION,
        temperature=bind("temperature"),
        max_tokens=bind("max_tokens"),
    )
    with Optimizer(ctx, "tpe", variables=["temperature", "max_tokens"], metric=metric, module=predict, seed=3) as opt:
        result = opt.run(n_trials=12)
        assert result.complete == 12
        # Each trial's module call got that trial's candidate.
        assert [(v["temperature"], v["max_tokens"]) for v, _ in scored] == [received for _, received in scored]
        best = opt.best()
        assert best is not None and best.state is TrialState.COMPLETE
        assert ctx.get_variables(["temperature", "max_tokens"]) == best.values
    predict.release()


def test_the_asyncio_twin(pool: RunningEngine) -> None:  # noqa: F811
    async def main() -> None:
        async with AsyncSessionContext(pool.address) as ctx:
            await ctx.register_variable("temperature", "float", 0.4, min=0.0, max=2.0)
            predict = AsyncModule(ctx, "dspy.predict", signature="question -> answer", temperature=bind("temperature"))
            async with predict:
                answer = (await predict(inputs=QUESTION))["outputs"]["answer"]
                assert settings(answer)[0] == 0.4
                assert len(await ctx.resources()) == 1
            assert await ctx.resources() == []

    asyncio.run(asyncio.wait_for(main(), 60))
