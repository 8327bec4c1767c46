"""Framework operations end to end: Python client → engine → worker pool → DSPy and
scikit-learn, through the proxies generated from `proto/adapters/*.toml`. Everything runs
offline: DSPy calls go to the echo LM, which answers with the settings it received."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sdk_engine import RunningEngine, pool  # noqa: F401

from mlbridge import (
    CallbackError,
    CallbackNotFound,
    InvalidArgument,
    OperationNotFound,
    SessionContext,
    VariableNotFound,
    VariableType,
    bind,
)
from mlbridge.value_types import Constraints
from mlbridge_adapters.builtin import Builtin
from mlbridge_adapters.dspy import Dspy
from mlbridge_adapters.sklearn import Sklearn

QUESTION = {"question": "What is the capital of France?"}


@pytest.fixture
def ctx(pool: RunningEngine) -> Iterator[SessionContext]:  # noqa: F811
    with SessionContext(pool.address) as context:
        yield context


def test_temperature_bound_to_a_variable_reaches_the_lm_on_every_call(ctx: SessionContext) -> None:
    ctx.register_variable("temperature", VariableType.FLOAT, 0.3, constraints=Constraints(min=0.0, max=2.0))
    dspy = Dspy(ctx)

    first = dspy.predict("question -> answer", QUESTION, temperature=bind("temperature"), max_tokens=32)
    assert "temperature=0.3" in first.outputs["answer"]
    assert "max_tokens=32" in first.outputs["answer"]
    assert first.operation.resolved_parameters["temperature"] == 0.3
    assert first.operation.bindings["temperature"].name == "temperature"

    ctx.set_variable("temperature", 1.1)
    second = dspy.predict("question -> answer", QUESTION, temperature=bind("temperature"), max_tokens=32)
    assert "temperature=1.1" in second.outputs["answer"]
    assert second.operation.bindings["temperature"].version == first.operation.bindings["temperature"].version + 1
    # The session stays on one worker; nothing was restarted in between.
    assert second.operation.worker_id == first.operation.worker_id


def test_defaults_apply_and_the_model_is_bindable(ctx: SessionContext) -> None:
    ctx.register_variable("model", VariableType.STRING, "mlbridge/echo")
    result = Dspy(ctx).predict("question -> answer", QUESTION, model=bind("model"))
    assert result.operation.resolved_parameters["temperature"] == 0.0
    assert result.operation.resolved_parameters["max_tokens"] == 256
    assert "model=mlbridge/echo" in result.outputs["answer"]


def test_chain_of_thought_returns_reasoning(ctx: SessionContext) -> None:
    result = Dspy(ctx).chain_of_thought("question -> answer", QUESTION, temperature=0.5)
    assert "temperature=0.5" in result.outputs["answer"]
    assert "reasoning" not in result.outputs
    assert result.reasoning


def test_sklearn_hyper_parameters_bound_to_variables(ctx: SessionContext) -> None:
    ctx.register_variable("c", VariableType.FLOAT, 1.0, constraints=Constraints(min=0.0, min_exclusive=True))
    sklearn = Sklearn(ctx)
    strong = sklearn.logistic_regression(dataset="iris", c=bind("c"))
    assert strong.accuracy > 0.8
    assert strong.n_test == len(strong.predictions) == 38
    ctx.set_variable("c", 0.0001)
    weak = sklearn.logistic_regression(dataset="iris", c=bind("c"))
    assert weak.operation.resolved_parameters["c"] == 0.0001
    assert weak.accuracy < strong.accuracy

    svc = sklearn.svc_pipeline(dataset="wine", kernel="linear")
    assert svc.accuracy > 0.8


def test_describe_adapters_reports_the_manifests(ctx: SessionContext) -> None:
    adapters = {a.framework: a for a in ctx.describe_adapters()}
    assert sorted(adapters) == ["builtin", "dspy", "sklearn"]
    predict = next(op for op in adapters["dspy"].operations if op.name == "predict")
    bindable = [p.name for p in predict.parameters if p.bindable]
    assert bindable == ["model", "temperature", "max_tokens"]
    assert adapters["dspy"].version  # dspy.__version__, reported by the worker
    assert [t.name for t in adapters["dspy"].tools] == ["dspy_signature_fields"]


def test_errors_name_what_is_wrong(ctx: SessionContext) -> None:
    with pytest.raises(OperationNotFound, match="predict_everything"):
        ctx.execute_operation("dspy", "predict_everything", {})
    with pytest.raises(InvalidArgument, match="signature"):
        ctx.execute_operation("dspy", "predict", {"inputs": QUESTION})
    with pytest.raises(InvalidArgument, match="signature"):
        ctx.execute_operation("dspy", "predict", {"signature": bind("sig"), "inputs": QUESTION})
    with pytest.raises(VariableNotFound, match="no_such_variable"):
        Dspy(ctx).predict("question -> answer", QUESTION, temperature=bind("no_such_variable"))


def test_an_invalid_signature_is_an_invalid_argument(ctx: SessionContext) -> None:
    with pytest.raises(InvalidArgument, match="not a DSPy signature"):
        Dspy(ctx).predict("this is not a signature", QUESTION)


def test_noop_and_echo_round_trip(ctx: SessionContext) -> None:
    builtin = Builtin(ctx)
    assert builtin.noop().operation.results == {}
    echoed = builtin.echo({"nested": [1, 2.5, "x"]})
    assert echoed.value == {"nested": [1, 2.5, "x"]}


def test_worker_hosted_tools_are_listed_and_callable(ctx: SessionContext) -> None:
    assert "dspy_signature_fields" in ctx.tools
    fields = ctx.tools.dspy_signature_fields(signature="question, context -> answer")
    assert fields == {"inputs": ["question", "context"], "outputs": ["answer"]}


def test_an_operation_calls_a_session_callback_from_the_worker(ctx: SessionContext) -> None:
    ran_in: list[int] = []

    @ctx.register_callback
    def double(x: float) -> float:
        ran_in.append(os.getpid())
        return x * 2

    assert Builtin(ctx).apply("double", arguments={"x": 1.5}).value == 3.0
    # The worker called back into this program (through the engine), not a copy of it.
    assert ran_in == [os.getpid()]
    spec = next(
        p
        for adapter in ctx.describe_adapters(["builtin"])
        for op in adapter.operations
        if op.name == "apply"
        for p in op.parameters
        if p.name == "callback"
    )
    assert spec.callback and not spec.bindable


def test_a_callback_parameter_naming_no_callback_fails_before_the_worker_runs(ctx: SessionContext) -> None:
    with pytest.raises(CallbackNotFound, match="no callback named `missing`") as raised:
        Builtin(ctx).apply("missing")
    assert raised.value.context.get("parameter") == "callback"


def test_a_callback_raising_under_a_worker_keeps_its_type_and_traceback(ctx: SessionContext) -> None:
    @ctx.register_callback
    def broken() -> None:
        raise KeyError("no such column")

    with pytest.raises(CallbackError) as raised:
        Builtin(ctx).apply("broken")
    assert raised.value.remote_type == "KeyError"
    assert "no such column" in raised.value.remote_traceback
