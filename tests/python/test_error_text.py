"""Errors stay short whatever a client sends: client text quoted in a message is clipped to
the schema's `ErrorTextLimit` with a marker, and every error on the wire is bounded, so no
status can outgrow gRPC's metadata limit. Plus the smaller wire fixes of the hardening
round: ListTools without a session, and the watcher limit as RESOURCE_EXHAUSTED (which the
SDK's cache watcher does not retry)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import grpc
import pytest

from mlbridge import (
    CallbackError,
    Constraints,
    ConstraintViolation,
    InvalidArgument,
    SessionContext,
    SessionLimitExceeded,
    ToolNotFound,
    VariableNotFound,
)
from mlbridge.errors import CONTEXT_CHARS, MESSAGE_CHARS, QUOTE_CHARS, TRACEBACK_CHARS, clip, error_to_proto
from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc
from sdk_engine import RunningEngine, address, ctx, engine, raw  # noqa: F401

# A message quotes a few clipped items plus fixed words; far below this whatever was sent.
SHORT = 3 * QUOTE_CHARS + 200
HUGE = 40_000


def test_the_limits_come_from_the_schema() -> None:
    assert (QUOTE_CHARS, CONTEXT_CHARS, MESSAGE_CHARS, TRACEBACK_CHARS) == (
        pb.ERROR_TEXT_LIMIT_QUOTE,
        pb.ERROR_TEXT_LIMIT_CONTEXT,
        pb.ERROR_TEXT_LIMIT_MESSAGE,
        pb.ERROR_TEXT_LIMIT_TRACEBACK,
    )
    assert clip("x" * QUOTE_CHARS) == "x" * QUOTE_CHARS
    clipped = clip("y" * 250)
    assert len(clipped) == QUOTE_CHARS and clipped.endswith("…[172 more characters]")
    assert clip(clipped) == clipped


def test_a_huge_bad_string_is_quoted_clipped(ctx: SessionContext) -> None:
    ctx.register_variable("code", "string", "ab", Constraints(pattern="[a-z]+"))
    with pytest.raises(ConstraintViolation) as raised:
        ctx.set_variable("code", "A" * HUGE)
    message = raised.value.message
    assert len(message) < SHORT, len(message)
    assert "more characters]" in message
    assert message.startswith("variable `code`: `AAAA")
    assert ctx.get_variable("code") == "ab"


def test_a_huge_unknown_name_is_quoted_clipped(raw: SessionContext, address: str) -> None:  # noqa: F811
    name = "n" * 10_000
    with pytest.raises(VariableNotFound) as raised:
        raw.get_variable(name)
    assert len(raised.value.message) < SHORT
    assert "more characters]" in raised.value.message
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.MLBridgeStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.ExecuteTool(pb.ExecuteToolRequest(session_id=raw.session_id, tool_name=name), timeout=10)
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(failed.value.details() or "") < SHORT
    with pytest.raises(ToolNotFound):
        raw.call_tool(name)


def test_a_huge_pattern_is_quoted_clipped(ctx: SessionContext) -> None:
    broken = "(" + "a" * HUGE
    with pytest.raises(InvalidArgument) as raised:
        ctx.register_variable("v", "string", "x", Constraints(pattern=broken))
    assert len(raised.value.message) < SHORT, raised.value.message[:300]
    long_pattern = "a{1,3}" + "|b" * (HUGE // 2)
    ctx.register_variable("w", "string", "aa", Constraints(pattern=long_pattern))
    with pytest.raises(ConstraintViolation) as violated:
        ctx.set_variable("w", "c" * HUGE)
    assert len(violated.value.message) < SHORT
    assert all(len(value) <= CONTEXT_CHARS + 40 for value in violated.value.context.values())


def test_a_callback_raising_a_huge_error_arrives_bounded(ctx: SessionContext, raw: SessionContext) -> None:
    @ctx.register_callback
    def shout(depth: int, words: int) -> int:
        # Two functions in turn, so that Python does not fold the repeated frames.
        def ping(n: int) -> int:
            if n == 0:
                raise ValueError("boom " * words)
            return pong(n - 1)

        def pong(n: int) -> int:
            return ping(n - 1) if n else ping(0)

        return ping(depth)

    with pytest.raises(CallbackError) as raised:
        raw.call_callback("shout", depth=0, words=HUGE)
    assert len(raised.value.message) == MESSAGE_CHARS
    assert raised.value.message.startswith("callback shout raised ValueError: boom boom")
    with pytest.raises(CallbackError) as raised:
        raw.call_callback("shout", depth=200, words=1)
    error = raised.value
    assert error.remote_type == "ValueError"
    # The end of the traceback, where the failure is, survives, clipped once.
    assert len(error.remote_traceback) == TRACEBACK_CHARS
    assert error.remote_traceback.startswith("[") and error.remote_traceback.count("characters left out]…") == 1
    assert error.remote_traceback.rstrip().endswith("ValueError: boom")


def test_the_wire_form_of_any_error_is_bounded() -> None:
    huge = ValueError("x")
    error = InvalidArgument("m" * 50_000, context={"k" * 1000: "v" * 50_000})
    error.remote_traceback = "t" * 50_000
    error.cause = InvalidArgument("c", cause=InvalidArgument("dropped"))
    wire = error_to_proto(error)
    assert wire.ByteSize() < 4096, wire.ByteSize()
    assert len(wire.message) == MESSAGE_CHARS and len(wire.remote_traceback) == TRACEBACK_CHARS
    assert wire.remote_traceback.endswith("t" * 10)
    assert wire.cause.message == "c" and not wire.cause.HasField("cause")
    del huge


def test_list_tools_without_a_session_lists_the_global_tools(address: str) -> None:  # noqa: F811
    with grpc.insecure_channel(address) as channel:
        tools = pb_grpc.MLBridgeStub(channel).ListTools(pb.ListToolsRequest(), timeout=10).tools
    names = [tool.spec.name for tool in tools]
    assert "add" in names and "map_callback" in names
    assert all(tool.session_id == "" for tool in tools)


@pytest.fixture
def two_watchers(engine_bin: object) -> Iterator[RunningEngine]:
    from sdk_engine import start_engine

    running = start_engine(engine_bin, "--max-watchers", "2")  # type: ignore[arg-type]
    yield running
    running.stop()


def test_the_watcher_limit_is_resource_exhausted_and_the_cache_stops_asking(
    two_watchers: RunningEngine, caplog: pytest.LogCaptureFixture
) -> None:
    with SessionContext(two_watchers.address, watch_cache=False) as owner:
        owner.register_variable("t", "float", 0.5)
        first = owner.watch("t")
        second = owner.watch("t")
        next(iter(first)), next(iter(second))  # both streams are open
        with pytest.raises(SessionLimitExceeded) as raised:
            next(iter(owner.watch("t", reconnect=False)))
        assert raised.value.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert raised.value.context["limit"] == "2"

        caplog.set_level(logging.WARNING, logger="mlbridge.watch")
        with SessionContext(two_watchers.address, owner.session_id, keep_session=True) as cached:
            assert cached.get_variable("t") == 0.5  # the first read starts the cache's watch
            watcher = cached._watcher
            assert watcher is not None
            watcher._thread.join(timeout=30)
            assert not watcher._thread.is_alive(), "the cache watcher kept retrying"
            assert "stops watching" in caplog.text
            # Reads still work, from the engine.
            assert cached.get_variable("t") == 0.5
            owner.set_variable("t", 0.75)
            assert cached.get_variable("t") == 0.75
        first.close()
        second.close()
        time.sleep(0)
