"""Typed tool proxies over the engine's built-in host tools (`add`, `echo`, `word_count`,
`fail`, streaming `count`): signatures and docs from the specs, calls, streams, and
argument errors raised before the call with the engine's messages."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from mlbridge import (
    BridgeError,
    Choice,
    Embedding,
    InvalidArgument,
    ModuleRef,
    SessionContext,
    ToolError,
    ToolNotFound,
    TypeMismatch,
)
from mlbridge.tools import ToolSpec
from mlbridge_proto import ml_bridge_pb2 as pb
from sdk_engine import address, ctx, engine, raw  # noqa: F401

BUILTINS = ["add", "count", "echo", "fail", "word_count"]


@pytest.fixture
def tools(ctx: SessionContext) -> SessionContext:
    missing = [name for name in BUILTINS if name not in ctx.tools]
    if missing:
        pytest.fail(f"the engine does not offer the built-in tools {missing} yet")
    return ctx


def test_signatures_and_docs_come_from_the_specs(tools: SessionContext) -> None:
    kw = inspect.Parameter.KEYWORD_ONLY
    add = inspect.signature(tools.tools.add)
    assert list(add.parameters.values()) == [
        inspect.Parameter("a", kw, annotation=float),
        inspect.Parameter("b", kw, annotation=float),
    ]
    assert add.return_annotation is float
    count = inspect.signature(tools.tools.count)
    assert list(count.parameters.values()) == [
        inspect.Parameter("to", kw, annotation=int),
        inspect.Parameter("delay_ms", kw, default=None, annotation=Optional[int]),  # noqa: UP045
    ]
    assert count.return_annotation == Iterator[int]
    assert inspect.signature(tools.tools.word_count).return_annotation is int
    assert inspect.signature(tools.tools.echo).parameters["value"].annotation is Any
    doc = tools.tools.add.__doc__
    assert doc is not None and doc.startswith("Adds two numbers.")
    assert "a (float): first addend" in doc and "b (float): second addend" in doc
    assert "delay_ms (integer, optional)" in (tools.tools.count.__doc__ or "")
    assert tools.tools.add.__name__ == "add"
    assert set(BUILTINS) <= set(tools.tools) and "add" in dir(tools.tools)


def test_calls(tools: SessionContext) -> None:
    assert tools.tools.add(a=1.5, b=2.25) == 3.75
    assert tools.tools.add(a=1, b=2) == 3.0
    assert tools.tools.word_count(text="the quick  brown\tfox") == 4
    assert tools.call_tool("word_count", text="") == 0
    for value in [None, 1, 2.5, "text", b"\x00", [1, [2]], {"k": {"n": None}}, [Choice("c")], ModuleRef("m", "a -> b"),
                  Embedding([0.5], "model")]:  # fmt: skip
        assert tools.tools.echo(value=value) == value


def test_a_choice_passes_through_an_any_parameter(tools: SessionContext, raw: SessionContext) -> None:
    assert raw.tools.echo(value=Choice("c")) == "c"
    assert tools.tools.echo(value=Choice("c")) == "c"


def test_numpy_arguments(tools: SessionContext) -> None:
    np = pytest.importorskip("numpy", reason="numpy is not installed: numpy tool arguments are skipped")
    array = np.arange(6, dtype=np.int32).reshape(3, 2)
    np.testing.assert_array_equal(tools.tools.echo(value=array), array)
    if "scale_embedding" in tools.tools:
        scaled = tools.tools.scale_embedding(embedding=np.array([1.0, 2.0]), factor=2)
        assert scaled == Embedding([2.0, 4.0])


def test_a_failing_tool_raises_tool_error(tools: SessionContext) -> None:
    with pytest.raises(ToolError) as raised:
        tools.tools.fail(message="boom")
    assert raised.value.message == "tool `fail` failed: boom"
    assert raised.value.context["tool"] == "fail"
    assert raised.value.grpc_code is not None


def test_streams(tools: SessionContext) -> None:
    assert list(tools.tools.count.stream(to=5)) == [0, 1, 2, 3, 4]
    assert list(tools.tools.count.stream(to=3, delay_ms=None)) == [0, 1, 2]
    assert list(tools.tools.count.stream(to=3, delay_ms=1)) == [0, 1, 2]
    assert list(tools.tools.count.stream(to=0)) == []
    assert list(tools.tools.add.stream(a=1, b=2)) == [3.0], "a unary tool streams one chunk"
    chunks = tools.tools.count.stream(to=1_000_000)
    assert [next(chunks) for _ in range(3)] == [0, 1, 2]
    chunks.close()  # stops the stream early (cancels the call)
    with pytest.raises(ToolError) as raised:
        list(tools.tools.count.stream(to=3, delay_ms=-1))
    assert raised.value.message == "tool `count` failed: `delay_ms` must not be negative, got -1"


def argument_error(
    ctx: SessionContext, raw: SessionContext, tool: str, kind: type[BridgeError], stream: bool = False, **args: Any
) -> BridgeError:
    """The error of calling `tool` with `args`, checked to be the engine's answer, the same
    through the SDK and through a raw client."""

    def call(client: SessionContext) -> None:
        proxy = client.tools[tool]
        if stream:
            list(proxy.stream(**args))
        else:
            proxy(**args)

    with pytest.raises(kind) as client_side:
        call(ctx)
    with pytest.raises(kind) as engine_side:
        call(raw)
    # The engine is the only judge: both clients carry its answer.
    assert client_side.value.grpc_code is not None and engine_side.value.grpc_code is not None
    assert client_side.value.message == engine_side.value.message
    assert client_side.value.context == engine_side.value.context
    return client_side.value


def test_argument_errors_are_the_engines(tools: SessionContext, raw: SessionContext) -> None:
    missing = argument_error(tools, raw, "add", InvalidArgument, a=1)
    assert missing.message == "tool `add` needs argument `b` (float)"
    assert missing.context == {"field": "arguments", "tool": "add", "parameter": "b"}
    unknown = argument_error(tools, raw, "add", InvalidArgument, a=1, b=2, c=3, bb=4)
    assert unknown.message == "tool `add` has no argument `bb` (it takes: a, b)"
    wrong = argument_error(tools, raw, "add", TypeMismatch, a="1", b=2)
    assert wrong.message == "argument `add.a` expects float, got string"
    assert wrong.context == {"parameter": "a", "expected": "float", "actual": "string", "tool": "add"}
    null = argument_error(tools, raw, "word_count", TypeMismatch, text=None)
    assert null.message == "argument `word_count.text` expects string, got null"
    first = argument_error(tools, raw, "add", TypeMismatch, a=1, b=[2])
    assert first.message == "argument `add.b` expects float, got list"
    streaming = argument_error(tools, raw, "count", TypeMismatch, stream=True, to="3")
    assert streaming.message == "argument `count.to` expects integer, got string"
    unary = argument_error(tools, raw, "count", InvalidArgument, to=3)
    assert unary.message == "tool `count` streams its results: call ExecuteStreamingTool"
    if "mean" in tools.tools:
        element = argument_error(tools, raw, "mean", TypeMismatch, values=[1, "x"])
        assert element.message == "argument `mean.values[1]` expects float, got string"
    with pytest.raises(TypeError):
        tools.tools.add(1, 2)  # type: ignore[call-arg]  # keyword-only


def test_arguments_are_converted_not_checked() -> None:
    # The engine judges arguments (see test_argument_errors_are_the_engines); the SDK only
    # converts them, with the declared type as a hint.
    spec = pb.ToolSpec(
        name="tune",
        parameters=[
            pb.ParameterSpec(name="rate", type=pb.VARIABLE_TYPE_FLOAT, required=True, constraints=pb.Constraints(max=1)),
            pb.ParameterSpec(name="mode", type=pb.VARIABLE_TYPE_CHOICE, default_value=pb.Value(string_value="a"),
                             constraints=pb.Constraints(choices=["a", "b"])),
        ],
    )  # fmt: skip
    tool = ToolSpec(spec)
    assert tool.arguments({"rate": 2})["rate"].int_value == 2, "out of range: for the engine to refuse"
    assert tool.arguments({"rate": 0.5, "mode": "c"})["mode"].string_value == "c"
    assert tool.arguments({"rate": 0.5})["rate"].float_value == 0.5
    assert str(tool.signature) == "(*, rate: float, mode: str = 'a') -> Any"
    embed = ToolSpec(pb.ToolSpec(name="embed", parameters=[pb.ParameterSpec(name="v", type=pb.VARIABLE_TYPE_EMBEDDING)]))
    assert list(embed.arguments({"v": [1, 2]})["v"].embedding_value.values) == [1.0, 2.0]


def test_unknown_tools(tools: SessionContext) -> None:
    assert not hasattr(tools.tools, "no_such_tool")
    with pytest.raises(ToolNotFound) as raised:
        tools.tools.no_such_tool(x=1)
    assert raised.value.message == "no tool named `no_such_tool`"
    with pytest.raises(ToolNotFound):
        tools.call_tool("no_such_tool")
    assert tools.tools.refresh() is tools.tools


def test_list_elements_are_converted_to_the_element_type(tools: SessionContext, raw: SessionContext) -> None:
    # `mean` takes Vec<f64>: integers are widened per element, on both sides of the wire.
    assert tools.tools.mean(values=[1, 2, 3]) == 2.0
    assert raw.tools.mean(values=[1, 2.5]) == 1.75
