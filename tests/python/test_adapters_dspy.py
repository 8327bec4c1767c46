"""The DSPy adapter's implementation (mlbridge.frameworks.dspy), offline: the echo LM and what
each request carried, the operations called directly and through an `Adapter` shaped like
the generated dispatch, and `apply_bindings` proven on what the LM actually received (the
echo engine's records and DSPy's DummyLM history)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import dspy  # type: ignore[import-untyped]
import pytest
from dspy.utils.dummies import DummyLM  # type: ignore[import-untyped]

from mlbridge import InvalidArgument
from mlbridge.dispatch import Adapter, Call, HostedTool, OperationSpec, ParameterSpec, ResultSpec
from mlbridge.frameworks import dspy as adapter
from mlbridge.frameworks.dspy import ECHO_MODEL, EchoEngine
from mlbridge.value_types import VariableType
from mlbridge.values import from_value, to_value


def echo_lm(temperature: float = 0.0, max_tokens: int = 256) -> Any:
    return adapter.make_lm(ECHO_MODEL, temperature=temperature, max_tokens=max_tokens)


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every LM the operations build with make_lm, so tests can look at what they received."""
    built: list[Any] = []
    original = adapter.make_lm

    def recording(model: str, *, temperature: float, max_tokens: int) -> Any:
        lm = original(model, temperature=temperature, max_tokens=max_tokens)
        built.append(lm)
        return lm

    monkeypatch.setattr(adapter, "make_lm", recording)
    return built


# -- the echo LM -------------------------------------------------------------------------------


def test_make_lm_gives_the_echo_lm_as_a_dspy_lm_with_an_echo_engine() -> None:
    lm = echo_lm(0.7, 128)
    assert isinstance(lm, dspy.BaseLM) and isinstance(lm, dspy.LM)
    assert isinstance(lm.engine, EchoEngine) and lm.engine.requests == []
    assert lm.model == ECHO_MODEL and lm.cache is False
    assert (lm.kwargs["temperature"], lm.kwargs["max_tokens"]) == (0.7, 128)


def test_other_model_names_give_a_plain_dspy_lm_without_calling_it() -> None:
    lm = adapter.make_lm("openai/gpt-4o-mini", temperature=0.2, max_tokens=64)
    assert type(lm) is dspy.LM and lm.engine == "auto"
    assert (lm.model, lm.kwargs["temperature"], lm.kwargs["max_tokens"]) == ("openai/gpt-4o-mini", 0.2, 64)


def test_echo_answers_every_output_field_with_the_settings_it_received() -> None:
    lm = echo_lm(0.7, 256)
    module = dspy.Predict("question, context -> answer, confidence")
    with dspy.context(lm=lm):
        prediction = module(question="What is 2+2?", context="arithmetic")
    expected = "echo(model=mlbridge/echo, temperature=0.7, max_tokens=256): question='What is 2+2?', context='arithmetic'"
    assert prediction.answer == expected and prediction.confidence == expected
    received = lm.engine.last
    assert (received.model, received.temperature, received.max_tokens) == (ECHO_MODEL, 0.7, 256)
    assert received.inputs == {"question": "What is 2+2?", "context": "arithmetic"}
    assert received.request.config.temperature == 0.7  # the dspy.lm15.Request itself
    assert len(lm.history) == 1  # DSPy's own history of the same call


def test_per_call_config_wins_over_the_lm_defaults() -> None:
    lm = echo_lm(0.7, 256)
    module = dspy.Predict("question -> answer")
    with dspy.context(lm=lm):
        module(question="q", config={"temperature": 1.5, "max_tokens": 9})
    assert (lm.engine.last.temperature, lm.engine.last.max_tokens) == (1.5, 9)


def test_echo_speaks_the_json_adapter_too() -> None:
    lm = echo_lm(0.1, 50)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        prediction = dspy.Predict("question -> answer")(question="json?")
    assert json.loads(lm.engine.last.text) == {"answer": prediction.answer}
    assert prediction.answer.startswith("echo(model=mlbridge/echo, temperature=0.1, max_tokens=50)")


def test_echo_serves_async_calls() -> None:
    lm = echo_lm(0.4, 32)

    async def main() -> Any:
        with dspy.context(lm=lm):
            return await dspy.ChainOfThought("question -> answer").acall(question="async?")

    prediction = asyncio.run(main())
    assert "temperature=0.4" in prediction.answer and "reasoned about question='async?'" in prediction.reasoning
    assert len(lm.engine.requests) == 1


def test_modules_holding_an_echo_lm_can_be_deep_copied() -> None:
    module = dspy.Predict("question -> answer")
    module.lm = echo_lm(0.3)
    copied = copy.deepcopy(module)
    copied(question="q")
    assert len(copied.lm.engine.requests) == 1 and module.lm.engine.requests == []


# -- the operations ----------------------------------------------------------------------------


def test_predict_returns_the_output_fields_and_labels(made: list[Any]) -> None:
    call = Call()
    result = adapter.predict(
        call,
        signature="question -> answer",
        inputs={"question": "What is DSPy?"},
        model=ECHO_MODEL,
        temperature=0.7,
        max_tokens=256,
    )
    assert result == {
        "outputs": {"answer": "echo(model=mlbridge/echo, temperature=0.7, max_tokens=256): question='What is DSPy?'"}
    }
    [lm] = made
    assert (lm.engine.last.temperature, lm.engine.last.max_tokens) == (0.7, 256)
    assert call.labels == {"model": ECHO_MODEL, "temperature": "0.7", "max_tokens": "256", "lm_calls": "1"}


def test_chain_of_thought_returns_reasoning_apart_from_the_outputs(made: list[Any]) -> None:
    call = Call()
    result = adapter.chain_of_thought(
        call,
        signature="question -> answer",
        inputs={"question": "Why?"},
        model=ECHO_MODEL,
        temperature=1.2,
        max_tokens=64,
    )
    settings = "echo(model=mlbridge/echo, temperature=1.2, max_tokens=64)"
    assert result == {
        "outputs": {"answer": f"{settings}: question='Why?'"},
        "reasoning": f"{settings} reasoned about question='Why?'",
    }
    [lm] = made
    assert list(lm.engine.last.outputs) == ["reasoning", "answer"]


def test_calls_share_no_dspy_state(made: list[Any]) -> None:
    with dspy.context(lm=DummyLM([{"answer": "from the global lm"}])):
        result = adapter.predict(
            Call(), signature="q -> answer", inputs={"q": "x"}, model=ECHO_MODEL, temperature=0.5, max_tokens=10
        )
    assert "temperature=0.5" in result["outputs"]["answer"]  # type: ignore[index]
    adapter.predict(Call(), signature="q -> answer", inputs={"q": "y"}, model=ECHO_MODEL, temperature=0.9, max_tokens=10)
    assert [lm.engine.last.temperature for lm in made] == [0.5, 0.9]
    assert [len(lm.engine.requests) for lm in made] == [1, 1]
    assert dspy.settings.lm is None


def test_concurrent_calls_each_get_their_own_settings() -> None:
    def run(i: int) -> tuple[object, str]:
        result = adapter.predict(
            Call(), signature="q -> a", inputs={"q": f"q{i}"}, model=ECHO_MODEL, temperature=i / 100, max_tokens=i + 1
        )
        expected = f"echo(model=mlbridge/echo, temperature={i / 100}, max_tokens={i + 1}): q='q{i}'"
        return result["outputs"]["a"], expected  # type: ignore[index]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(run, range(64)))
    assert [got for got, _ in answers] == [expected for _, expected in answers]


def test_programs_with_the_echo_lm_save_and_load(tmp_path: Path) -> None:
    module = dspy.Predict("question -> answer")
    module.lm = echo_lm(0.3, 12)
    module.save(tmp_path / "program.json")
    loaded = dspy.Predict("question -> answer")
    loaded.load(tmp_path / "program.json", allow_unsafe_lm_state=True)  # the engine is a custom class
    assert isinstance(loaded.lm.engine, EchoEngine)
    assert loaded(question="x").answer == "echo(model=mlbridge/echo, temperature=0.3, max_tokens=12): question='x'"


def test_signature_fields_lists_inputs_and_outputs_in_order() -> None:
    fields = adapter.signature_fields(Call(), signature="question, context: list[str] -> answer: int, score: float")
    assert fields == {"inputs": ["question", "context"], "outputs": ["answer", "score"]}


@pytest.mark.parametrize(
    ("signature", "inputs", "message", "parameter"),
    [
        ("no arrow", {}, "'no arrow' is not a DSPy signature", "signature"),
        ("a b -> c", {}, "is not a DSPy signature", "signature"),
        ("q -> a: NoSuchType", {"q": 1}, "is not a DSPy signature", "signature"),
        ("q ->", {"q": 1}, "has no output fields", "signature"),
        ("q, r -> a", {"q": 1, "x": 2}, r"missing r; unknown x\); expected q, r", "inputs"),
    ],
)
def test_bad_signatures_and_inputs_raise_invalid_argument(
    signature: str, inputs: dict[str, Any], message: str, parameter: str
) -> None:
    with pytest.raises(InvalidArgument, match=message) as error:
        adapter.predict(Call(), signature=signature, inputs=inputs, model=ECHO_MODEL, temperature=0.0, max_tokens=8)
    assert error.value.context["parameter"] == parameter


def test_chain_of_thought_refuses_a_reasoning_output_of_its_own() -> None:
    with pytest.raises(InvalidArgument, match="adds its own `reasoning` output field"):
        adapter.chain_of_thought(
            Call(), signature="q -> reasoning", inputs={"q": 1}, model=ECHO_MODEL, temperature=0.0, max_tokens=8
        )


# -- through an Adapter shaped like the generated dispatch ---------------------------------------


def _lm_params() -> tuple[ParameterSpec, ...]:
    return (
        ParameterSpec("signature", VariableType.STRING, required=True),
        ParameterSpec("inputs", VariableType.MAP, required=True),
        ParameterSpec("model", VariableType.STRING, default=ECHO_MODEL, has_default=True, bindable=True),
        ParameterSpec("temperature", VariableType.FLOAT, default=0.0, has_default=True, bindable=True),
        ParameterSpec("max_tokens", VariableType.INTEGER, default=256, has_default=True, bindable=True),
    )


def _predict(module: ModuleType, call: Call, arguments: Mapping[str, Any]) -> Mapping[str, object]:
    return module.predict(call, **arguments)  # type: ignore[no-any-return]


def _cot(module: ModuleType, call: Call, arguments: Mapping[str, Any]) -> Mapping[str, object]:
    return module.chain_of_thought(call, **arguments)  # type: ignore[no-any-return]


def _fields(module: ModuleType, call: Call, arguments: Mapping[str, Any]) -> object:
    return module.signature_fields(call, **arguments)


ADAPTER = Adapter(
    framework="dspy",
    implementation="mlbridge.frameworks.dspy",
    package="dspy",
    operations=(
        OperationSpec("predict", "module", _predict, _lm_params(), (ResultSpec("outputs", VariableType.MAP),)),
        OperationSpec(
            "chain_of_thought",
            "module",
            _cot,
            _lm_params(),
            (ResultSpec("outputs", VariableType.MAP), ResultSpec("reasoning", VariableType.STRING)),
        ),
    ),
    tools=(
        HostedTool(
            "dspy_signature_fields",
            _fields,
            (ParameterSpec("signature", VariableType.STRING, required=True),),
            VariableType.MAP,
        ),
    ),
)


def test_results_encode_through_an_adapter_like_the_generated_dispatch() -> None:
    call = Call()
    encoded = ADAPTER.execute(
        "chain_of_thought",
        {
            "signature": to_value("question -> answer"),
            "inputs": to_value({"question": "wire?"}),
            "temperature": to_value(0.25),
        },
        call,
    )
    outputs = from_value(encoded["outputs"])
    assert outputs == {"answer": "echo(model=mlbridge/echo, temperature=0.25, max_tokens=256): question='wire?'"}
    assert from_value(encoded["reasoning"]).endswith("reasoned about question='wire?'")
    assert call.labels["temperature"] == "0.25"
    fields = ADAPTER.execute_tool("dspy_signature_fields", {"signature": to_value("a, b -> c")}, Call())
    assert from_value(fields) == {"inputs": ["a", "b"], "outputs": ["c"]}
    assert ADAPTER.describe().version == dspy.__version__


# -- apply_bindings ----------------------------------------------------------------------------


def test_bound_settings_reach_the_echo_lm_request_on_every_call() -> None:
    lm = echo_lm(0.0, 256)
    module = dspy.Predict("question -> answer")
    module.lm = lm
    adapter.apply_bindings(module, {"temperature": 0.3, "max_tokens": 99})
    first = module(question="one")
    adapter.apply_bindings(module, {"temperature": 0.9})
    second = module(question="two")
    assert [(r.temperature, r.max_tokens) for r in lm.engine.requests] == [(0.3, 99), (0.9, 99)]
    assert "temperature=0.3" in first.answer and "temperature=0.9" in second.answer
    assert module.lm is lm  # nothing re-created


def test_bound_settings_reach_dummy_lm_requests() -> None:
    lm = DummyLM([{"answer": "a"}, {"answer": "b"}])
    module = dspy.Predict("question -> answer")
    module.lm = lm
    adapter.apply_bindings(module, {"temperature": 0.3, "max_tokens": 17})
    module(question="one")
    adapter.apply_bindings(module, {"temperature": 0.9})
    module(question="two")
    assert [(h["kwargs"]["temperature"], h["kwargs"]["max_tokens"]) for h in lm.history] == [(0.3, 17), (0.9, 17)]


def test_a_bound_model_replaces_the_lm_only_when_it_changes() -> None:
    module = dspy.Predict("question -> answer")
    adapter.apply_bindings(module, {"model": ECHO_MODEL, "temperature": 0.6})
    echo = module.lm
    assert isinstance(echo.engine, EchoEngine) and echo.kwargs["temperature"] == 0.6
    adapter.apply_bindings(module, {"model": ECHO_MODEL, "temperature": 0.2})
    assert module.lm is echo
    module(question="q")
    assert echo.engine.last.temperature == 0.2
    adapter.apply_bindings(module, {"model": "openai/gpt-4o-mini", "max_tokens": 12})
    assert type(module.lm) is dspy.LM and module.lm.model == "openai/gpt-4o-mini"
    assert (module.lm.kwargs["temperature"], module.lm.kwargs["max_tokens"]) == (0.2, 12)  # never called


def test_chain_of_thought_bindings_reach_its_inner_predictor() -> None:
    module = dspy.ChainOfThought("question -> answer")
    adapter.apply_bindings(module, {"model": ECHO_MODEL, "temperature": 1.1, "max_tokens": 7})
    prediction = module(question="cot")
    [predictor] = module.predictors()
    received = predictor.lm.engine.last
    assert (received.model, received.temperature, received.max_tokens) == (ECHO_MODEL, 1.1, 7)
    assert prediction.reasoning.startswith("echo(model=mlbridge/echo, temperature=1.1, max_tokens=7)")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"top_p": 0.5}, "no bindable parameter 'top_p'; bindable: model, temperature, max_tokens"),
        ({"temperature": "hot"}, "`temperature` needs a number, got str 'hot'"),
        ({"temperature": True}, "`temperature` needs a number"),
        ({"max_tokens": 2.5}, "`max_tokens` needs an integer, got float 2.5"),
        ({"model": ""}, "`model` needs a model name"),
    ],
)
def test_apply_bindings_rejects_what_it_cannot_apply(values: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        adapter.apply_bindings(dspy.Predict("q -> a"), values)


def test_a_signature_text_is_parsed_once_and_the_cache_is_bounded() -> None:
    """Building a Signature class was over a third of a Predict call (py-spy in a worker):
    the class for a text is made once, reused, never changed by Predict, and the cache
    of texts is bounded whatever clients send."""
    adapter._signature_class.cache_clear()
    first = adapter.predict(Call(), signature="q -> a", inputs={"q": "x"}, model=ECHO_MODEL, temperature=0.0, max_tokens=16)
    second = adapter.predict(Call(), signature="q -> a", inputs={"q": "y"}, model=ECHO_MODEL, temperature=0.0, max_tokens=16)
    assert set(first["outputs"]) == set(second["outputs"]) == {"a"}
    info = adapter._signature_class.cache_info()
    assert (info.hits, info.misses, info.maxsize) == (1, 1, adapter.SIGNATURE_CACHE_SIZE)
    assert adapter._signature_class("q -> a") is adapter._signature_class("q -> a")
    for i in range(adapter.SIGNATURE_CACHE_SIZE + 10):
        adapter.signature_fields(Call(), signature=f"q{i} -> a")
    assert adapter._signature_class.cache_info().currsize == adapter.SIGNATURE_CACHE_SIZE
    # A text DSPy refuses is refused every time, not cached.
    for _ in range(2):
        with pytest.raises(InvalidArgument):
            adapter.signature_fields(Call(), signature="no arrow here")
