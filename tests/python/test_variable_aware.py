"""The VariableAware runtime against a real engine: DSPy modules whose LM settings follow
session variables (proven on what the LM request carried), scikit-learn estimators whose
hyper-parameters follow variables at each fit, and tools whose arguments come from
variables."""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import dspy  # type: ignore[import-untyped]
import cloudpickle  # type: ignore[import-untyped]
import numpy as np
import pytest
from dspy.utils.dummies import DummyLM  # type: ignore[import-untyped]
from sklearn.datasets import load_iris  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]
from sklearn.svm import SVC  # type: ignore[import-untyped]

from mlbridge import AsyncSessionContext, Constraints, InvalidArgument, SessionContext, VariableNotFound
from mlbridge.frameworks.dspy import ECHO_MODEL, EchoEngine, make_lm
from mlbridge.variable_aware import (
    BoundVariable,
    VariableAwareEstimator,
    VariableAwareMixin,
    VariableAwareProxyTool,
)
from sdk_engine import address, ctx, engine, eventually  # noqa: F401

LM_SETTINGS: Mapping[str, str] = {"model": "model", "temperature": "temperature", "max_tokens": "max_tokens"}


# The classes generated from dspy.toml and sklearn.toml.
from mlbridge_adapters.dspy.variable_aware import VariableAwareChainOfThought, VariableAwarePredict  # noqa: E402
from mlbridge_adapters.sklearn.variable_aware import VariableAwareLogisticRegression  # noqa: E402


def echo_lm() -> Any:
    return make_lm(ECHO_MODEL, temperature=0.0, max_tokens=256)


@pytest.fixture
def iris() -> tuple[Any, Any]:
    return load_iris(return_X_y=True)  # type: ignore[no-any-return]


# -- VariableAwareMixin on DSPy modules ----------------------------------------------------------


def test_predict_follows_the_temperature_variable_on_every_call(ctx: SessionContext) -> None:
    ctx.register_variable("temperature", "float", 0.3, Constraints(min=0.0, max=2.0))
    qa = VariableAwarePredict("question -> answer", ctx=ctx, bindings={"temperature": "temperature"})
    lm = qa.lm = echo_lm()
    first = qa(question="one")
    ctx["temperature"] = 0.9
    second = qa(question="two")
    assert [request.temperature for request in lm.engine.requests] == [0.3, 0.9]
    assert "temperature=0.3" in first.answer and "temperature=0.9" in second.answer
    assert qa.lm is lm and qa.bindings == {"temperature": "temperature"}


def test_a_write_by_another_client_reaches_the_next_call(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("temperature", "float", 0.3)
    qa = VariableAwarePredict("question -> answer", ctx=ctx).bind_to_variable("temperature", "temperature")
    qa.lm = echo_lm()
    qa(question="before")
    with SessionContext(address, ctx.session_id) as other:
        other["temperature"] = 1.7
    eventually(qa.sync_variables, lambda values: values == {"temperature": 1.7})
    qa(question="after")
    assert [request.temperature for request in qa.lm.engine.requests] == [0.3, 1.7]


def test_dummy_lm_receives_the_bound_settings(ctx: SessionContext) -> None:
    ctx.register_variable("temp", "float", 0.3)
    ctx.register_variable("budget", "integer", 40)
    qa = VariableAwarePredict("question -> answer", ctx=ctx, bindings={"temperature": "temp", "max_tokens": "budget"})
    lm = qa.lm = DummyLM([{"answer": "a"}, {"answer": "b"}])
    qa(question="one")
    ctx.set_variables({"temp": 0.9, "budget": 80})
    qa(question="two")
    assert [(h["kwargs"]["temperature"], h["kwargs"]["max_tokens"]) for h in lm.history] == [(0.3, 40), (0.9, 80)]


def test_chain_of_thought_with_every_setting_bound_returns_reasoning(ctx: SessionContext) -> None:
    ctx.register_variable("model", "string", ECHO_MODEL)
    ctx.register_variable("temperature", "float", 0.5)
    ctx.register_variable("max_tokens", "integer", 64)
    cot = VariableAwareChainOfThought("question -> answer", ctx=ctx, bindings=dict(LM_SETTINGS))
    prediction = cot(question="why?")
    settings = "echo(model=mlbridge/echo, temperature=0.5, max_tokens=64)"
    assert prediction.answer == f"{settings}: question='why?'"
    assert prediction.reasoning == f"{settings} reasoned about question='why?'"
    [predictor] = cot.predictors()
    lm = predictor.lm
    assert isinstance(lm.engine, EchoEngine)
    ctx["max_tokens"] = 8
    cot(question="again")
    assert predictor.lm is lm and lm.engine.last.max_tokens == 8


def test_a_bound_model_switches_the_lm(ctx: SessionContext) -> None:
    ctx.register_variable("model", "string", ECHO_MODEL)
    qa = VariableAwarePredict("question -> answer", ctx=ctx, bindings={"model": "model"})
    assert qa.sync_variables() == {"model": ECHO_MODEL}
    echo = qa.lm
    ctx["model"] = "openai/gpt-4o-mini"
    qa.sync_variables()
    assert type(qa.lm) is dspy.LM and qa.lm.model == "openai/gpt-4o-mini"  # never called: no network
    ctx["model"] = ECHO_MODEL
    qa.sync_variables()
    assert qa.lm is not echo and isinstance(qa.lm.engine, EchoEngine)


def test_async_forward_reads_through_an_async_session(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("temperature", "float", 0.25)

    async def main() -> list[float]:
        async with AsyncSessionContext(address, ctx.session_id) as actx:
            qa = VariableAwarePredict("question -> answer", ctx=actx, bindings={"temperature": "temperature"})
            qa.lm = echo_lm()
            await qa.acall(question="one")
            await actx.set_variable("temperature", 0.75)
            await qa.acall(question="two")
            with pytest.raises(InvalidArgument, match="AsyncSessionContext, which a blocking call cannot read"):
                qa(question="blocking")
            return [request.temperature for request in qa.lm.engine.requests]

    assert asyncio.run(main()) == [0.25, 0.75]


def test_a_missing_variable_raises_variable_not_found_naming_the_binding(ctx: SessionContext) -> None:
    qa = VariableAwarePredict("question -> answer", ctx=ctx, bindings={"temperature": "no_such_variable"})
    qa.lm = echo_lm()
    with pytest.raises(VariableNotFound) as error:
        qa(question="q")
    message = str(error.value)
    assert "VariableAwarePredict: parameter `temperature` is bound to variable `no_such_variable`" in message
    assert f"session `{ctx.session_id}` does not have" in message
    assert error.value.context == {
        "variable": "no_such_variable",
        "parameter": "temperature",
        "session_id": ctx.session_id,
    }
    assert qa.lm.engine.requests == []


def test_binding_checks_the_parameter_and_the_session() -> None:
    qa = VariableAwarePredict("question -> answer")
    with pytest.raises(InvalidArgument, match="no bindable parameter `top_p`; bindable: model, temperature, max_tokens"):
        qa.bind_to_variable("top_p", "p")
    with pytest.raises(InvalidArgument, match="must be bound to a variable name"):
        qa.bind_to_variable("temperature", "")
    with pytest.raises(InvalidArgument, match=r"has bindings \(temperature -> t\) but no session"):
        VariableAwarePredict("q -> a", bindings={"temperature": "t"})(q="x")
    assert VariableAwarePredict("q -> a").sync_variables() == {}  # nothing bound: nothing to read


def test_bindings_are_read_only_and_unbind_stops_following(ctx: SessionContext) -> None:
    ctx.register_variable("temperature", "float", 0.4)
    qa = VariableAwarePredict("question -> answer", ctx=ctx, bindings={"temperature": "temperature"})
    with pytest.raises(TypeError):
        qa.bindings["max_tokens"] = "x"  # type: ignore[index]
    qa.lm = echo_lm()
    qa(question="one")
    qa.unbind("temperature").unbind("max_tokens")
    ctx["temperature"] = 1.9
    qa(question="two")
    assert [request.temperature for request in qa.lm.engine.requests] == [0.4, 0.4]  # the last applied value stays
    assert qa.bindings == {}


def test_copies_stay_bound_to_the_session_and_pickles_drop_it(ctx: SessionContext) -> None:
    ctx.register_variable("temperature", "float", 0.6)
    qa = VariableAwarePredict("question -> answer", ctx=ctx, bindings={"temperature": "temperature"})
    for copied in (copy.deepcopy(qa), qa.deepcopy(), qa.reset_copy()):
        assert copied.ctx is ctx and copied.bindings == qa.bindings and copied is not qa
        copied.lm = echo_lm()
        copied(question="copy")
        assert copied.lm.engine.last.temperature == 0.6
    loaded = pickle.loads(cloudpickle.dumps(qa))  # DSPy's own way of saving whole programs
    assert loaded.ctx is None and loaded.bindings == {"temperature": "temperature"}
    loaded.ctx = ctx
    assert loaded.sync_variables() == {"temperature": 0.6}


class Knob:
    """A framework object without DSPy: applied with set_params or setattr."""

    def __init__(self, size: int = 1) -> None:
        self.size = size


class SettableKnob(Knob):
    def set_params(self, **params: Any) -> None:
        self.calls = getattr(self, "calls", 0) + 1
        self.__dict__.update(params)


class VariableAwareKnob(VariableAwareMixin, Knob):
    BINDABLE: ClassVar[Mapping[str, str]] = MappingProxyType({"size": "size"})


class VariableAwareSettableKnob(VariableAwareMixin, SettableKnob):
    BINDABLE: ClassVar[Mapping[str, str]] = MappingProxyType({"knob_size": "size"})


def test_without_an_implementation_values_go_through_set_params_or_setattr(ctx: SessionContext) -> None:
    ctx.register_variable("size", "integer", 7)
    plain = VariableAwareKnob(2, ctx=ctx, bindings={"size": "size"})
    assert plain.size == 2 and plain.sync_variables() == {"size": 7} and plain.size == 7
    settable = VariableAwareSettableKnob(ctx=ctx, bindings={"size": "size"})  # the framework keyword works too
    assert settable.bindings == {"knob_size": "size"}
    settable.sync_variables()
    assert (settable.size, settable.calls) == (7, 1)


# -- VariableAwareEstimator ----------------------------------------------------------------------


def test_estimator_follows_its_variable_at_each_fit(ctx: SessionContext, iris: tuple[Any, Any]) -> None:
    X, y = iris
    ctx.register_variable("reg_strength", "float", 0.001, Constraints(min=0.0, min_exclusive=True))
    model = VariableAwareEstimator(LogisticRegression(max_iter=1000), ctx, bindings={"C": "reg_strength"})
    assert model.fit(X, y) is model
    assert model.estimator.get_params()["C"] == 0.001
    weak_coef = model.estimator.coef_.copy()
    weak_score = model.score(X, y)
    ctx["reg_strength"] = 10.0
    model.predict(X)
    assert model.estimator.get_params()["C"] == 0.001  # predicting never re-applies
    model.fit(X, y)
    assert model.estimator.get_params()["C"] == 10.0
    assert not np.allclose(model.estimator.coef_, weak_coef)
    assert model.score(X, y) > weak_score and model.predict_proba(X).shape == (150, 3)


def test_pipeline_parameters_bind_by_their_set_params_keywords(ctx: SessionContext, iris: tuple[Any, Any]) -> None:
    X, y = iris
    ctx.register_variable("svc_c", "float", 0.01)
    ctx.register_variable("kernel", "choice", "linear", Constraints(choices=["linear", "rbf"]))
    pipeline = Pipeline([("scale", StandardScaler()), ("svc", SVC())])
    model = VariableAwareEstimator(pipeline, ctx, bindings={"svc__C": "svc_c", "svc__kernel": "kernel"})
    model.fit(X, y)
    params = model.estimator.get_params()
    assert params["svc__C"] == 0.01 and params["svc__kernel"] == "linear"
    assert type(params["svc__kernel"]) is str  # a Choice value reaches scikit-learn as a plain str
    supports = int(sum(model.estimator.named_steps["svc"].n_support_))
    ctx.set_variables({"svc_c": 100.0, "kernel": "rbf"})
    model.fit(X, y)
    assert model.estimator.get_params()["svc__kernel"] == "rbf"
    assert int(sum(model.estimator.named_steps["svc"].n_support_)) < supports


def test_generated_estimator_classes_take_manifest_names(ctx: SessionContext, iris: tuple[Any, Any]) -> None:
    X, y = iris
    ctx.register_variable("c", "float", 0.5)
    ctx.register_variable("iterations", "integer", 3000)
    model = VariableAwareLogisticRegression(ctx, bindings={"c": "c", "max_iter": "iterations"}, tol=1e-3)
    assert model.bindings == {"C": "c", "max_iter": "iterations"}
    assert model.fit(X, y).sync_variables() == {"C": 0.5, "max_iter": 3000}
    assert model.estimator.get_params()["tol"] == 1e-3 and model.estimator.max_iter == 3000
    assert isinstance(model.estimator, LogisticRegression)


def test_invalid_estimator_bindings_raise_clearly(ctx: SessionContext, iris: tuple[Any, Any]) -> None:
    with pytest.raises(InvalidArgument, match=r"LogisticRegression\) has no parameter `alpha`; set_params takes .*\bC\b"):
        VariableAwareEstimator(LogisticRegression(), ctx, bindings={"alpha": "a"})
    with pytest.raises(InvalidArgument, match="has no parameter `svc__gamma_`"):
        VariableAwareEstimator(Pipeline([("svc", SVC())]), ctx, bindings={"svc__gamma_": "g"})
    with pytest.raises(InvalidArgument, match="wraps scikit-learn estimators .*, not str"):
        VariableAwareEstimator("not an estimator", ctx)
    with pytest.raises(
        InvalidArgument,
        match=r"VariableAwareLogisticRegression\(LogisticRegression\) has no parameter `cc`; "
        r"set_params takes c, max_iter, C, ",
    ):
        VariableAwareLogisticRegression(ctx, bindings={"cc": "v"})
    with pytest.raises(InvalidArgument, match="must be bound to a variable name"):
        VariableAwareLogisticRegression(ctx).bind_to_variable("c", "")
    model = VariableAwareEstimator(LogisticRegression(), ctx, bindings={"C": "missing"})
    with pytest.raises(VariableNotFound, match=r"parameter `C` is bound to variable `missing`"):
        model.fit(*iris)


def test_async_fit_reads_through_an_async_session(ctx: SessionContext, address: str, iris: tuple[Any, Any]) -> None:
    ctx.register_variable("reg_strength", "float", 0.05)

    async def main() -> float:
        async with AsyncSessionContext(address, ctx.session_id) as actx:
            model = VariableAwareEstimator(LogisticRegression(max_iter=1000), actx, bindings={"C": "reg_strength"})
            await model.afit(*iris)
            return float(model.estimator.C)

    assert asyncio.run(main()) == 0.05


def test_estimator_copies_share_the_session(ctx: SessionContext) -> None:
    model = VariableAwareEstimator(LogisticRegression(), ctx, bindings={"C": "reg"})
    copied = copy.deepcopy(model)
    assert copied.ctx is ctx and copied.estimator is not model.estimator and copied.bindings == model.bindings
    assert pickle.loads(pickle.dumps(model)).ctx is None


# -- VariableAwareProxyTool ----------------------------------------------------------------------


def test_host_tool_arguments_come_from_variables(ctx: SessionContext) -> None:
    ctx.register_variable("offset", "float", 2.5)
    add = VariableAwareProxyTool(ctx.tools.add, ctx, bindings={"b": "offset"})
    assert add(a=1.0) == 3.5
    assert add(a=1.0, b=10.0) == 11.0  # explicit arguments win
    ctx["offset"] = 4.0
    assert add(a=1.0) == 5.0
    assert add.__name__ == "add" and (add.__doc__ or "").startswith("Adds two numbers.")
    parameters = inspect.signature(add).parameters
    assert parameters["b"].default == BoundVariable("offset") and parameters["a"].default is inspect.Parameter.empty
    assert "b: float = variable('offset')" in str(inspect.signature(add))


def test_streaming_host_tools_get_injected_arguments(ctx: SessionContext) -> None:
    ctx.register_variable("limit", "integer", 3)
    count = VariableAwareProxyTool(ctx.tools.count, ctx).bind_to_variable("to", "limit")
    assert list(count.stream()) == list(ctx.tools.count.stream(to=3))
    assert list(count.stream(to=1)) == list(ctx.tools.count.stream(to=1))
    with pytest.raises(InvalidArgument, match="tool `greet` does not stream"):
        VariableAwareProxyTool(greet, ctx).stream()


def greet(name: str, punctuation: str = "!", *, times: int = 1) -> str:
    """Greets someone."""
    return (f"hello {name}" + punctuation) * times


def test_python_functions_get_injected_arguments_and_keep_their_identity(ctx: SessionContext) -> None:
    ctx.register_variable("punct", "string", "?")
    ctx.register_variable("times", "integer", 2)
    tool = VariableAwareProxyTool(greet, ctx, bindings={"punctuation": "punct", "times": "times"})
    assert tool("ada") == "hello ada?hello ada?"
    assert tool("ada", ".") == "hello ada.hello ada."  # given positionally: wins
    assert tool(name="ada", times=1) == "hello ada?"
    assert tool.sync_variables() == {"punctuation": "?", "times": 2}
    assert tool.__name__ == "greet" and tool.__doc__ == "Greets someone."
    signature = str(inspect.signature(tool)).replace("'str'", "str").replace("'int'", "int")
    assert signature == "(name: str, punctuation: str = variable('punct'), *, times: int = variable('times')) -> str"


def test_tool_bindings_are_checked_against_the_signature(ctx: SessionContext) -> None:
    takes = r"tool `greet` has no argument `loudness` \(it takes: name, punctuation, times\)"
    with pytest.raises(InvalidArgument, match=takes):
        VariableAwareProxyTool(greet, ctx, bindings={"loudness": "v"})
    with pytest.raises(InvalidArgument, match="tool `add` has no argument `c`"):
        VariableAwareProxyTool(ctx.tools.add, ctx, bindings={"c": "v"})

    def positional(x: int, /) -> int:
        return x

    with pytest.raises(InvalidArgument, match="cannot take `x` by name"):
        VariableAwareProxyTool(positional, ctx, bindings={"x": "v"})

    def anything(**options: Any) -> dict[str, Any]:
        return options

    ctx.register_variable("level", "integer", 3)
    assert VariableAwareProxyTool(anything, ctx, bindings={"level": "level"})() == {"level": 3}
    with pytest.raises(VariableNotFound, match="tool `add`: parameter `b` is bound to variable `nope`"):
        VariableAwareProxyTool(ctx.tools.add, ctx, bindings={"b": "nope"})(a=1.0)
    assert VariableAwareProxyTool(ctx.tools.add, ctx, bindings={"b": "nope"})(a=1.0, b=2.0) == 3.0  # not read
    with pytest.raises(InvalidArgument, match="VariableAwareProxyTool wraps a callable"):
        VariableAwareProxyTool(42, ctx)  # type: ignore[arg-type]


def test_async_tools_are_awaited_with_injected_arguments(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("offset", "float", 0.5)

    async def main() -> tuple[Any, Any]:
        async with AsyncSessionContext(address, ctx.session_id) as actx:
            add = VariableAwareProxyTool(actx.tools.add, actx, bindings={"b": "offset"})
            local = VariableAwareProxyTool(greet, actx, bindings={"punctuation": "offset"})
            return await add.acall(a=1.0), await local.acall("x", punctuation="~")

    assert asyncio.run(main()) == (1.5, "hello x~")
