"""Callbacks into Python against a real engine process: the engine calls functions a
session registered (`ctx.register_callback`) through the SDK's background callback server.
Calls come through `InvokeCallback` (here from a second client of the session), the RPC a
Rust program uses too."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from mlbridge import (
    AsyncSessionContext,
    CallbackError,
    CallbackNotFound,
    CallbackUnavailable,
    SessionContext,
    Timeout,
    TypeMismatch,
)
from mlbridge.callbacks import current_call
from sdk_engine import RunningEngine, engine, unique  # noqa: F401

# Long enough never to be reached when the code works; a broken cancellation fails, not hangs.
NEVER = 60.0


@pytest.fixture
def pair(engine: RunningEngine) -> Iterator[tuple[SessionContext, SessionContext]]:  # noqa: F811
    """The client that registers callbacks, and a second client of its session."""
    with SessionContext(engine.address) as owner:
        with SessionContext(engine.address, owner.session_id, token=owner.token, keep_session=True) as other:
            yield owner, other


def test_a_callback_returns_a_value(pair: tuple[SessionContext, SessionContext]) -> None:
    owner, other = pair

    @owner.register_callback
    def score(x: float, weight: float = 2.0) -> float:
        return x * weight

    assert other.call_callback("score", x=1.5) == 3.0
    assert other.call_callback("score", x=1.0, weight=5) == 5.0
    assert owner.get_session().callback_count == 1
    # The engine judges the arguments against the specs from the signature.
    with pytest.raises(TypeMismatch):
        other.call_callback("score", x="high")


def test_the_decorator_takes_a_name_and_a_deadline(pair: tuple[SessionContext, SessionContext]) -> None:
    owner, other = pair

    @owner.callback("scaled", timeout=5.0)
    def score(x: float) -> float:
        return x * 10

    assert score(0.5) == 5.0  # the function itself is returned
    assert other.call_callback("scaled", x=0.25) == 2.5
    with pytest.raises(CallbackNotFound):
        other.call_callback("score", x=0.25)


def test_a_raising_callback_keeps_its_type_and_traceback(pair: tuple[SessionContext, SessionContext]) -> None:
    owner, other = pair

    def metric(prediction: str) -> float:
        raise ValueError(f"cannot score {prediction!r}")

    owner.register_callback(metric, name="raising_metric")
    with pytest.raises(CallbackError) as raised:
        other.call_callback("raising_metric", prediction="x")
    error = raised.value
    assert error.remote_type == "ValueError"
    assert "cannot score 'x'" in error.remote_traceback
    assert "def metric" not in error.remote_traceback and "in metric" in error.remote_traceback
    assert error.origin == "callback:raising_metric"


def test_a_hanging_callback_times_out_and_sees_the_cancellation(
    pair: tuple[SessionContext, SessionContext],
) -> None:
    owner, other = pair
    started, saw_cancel = threading.Event(), threading.Event()

    def hang() -> None:
        call = current_call()
        assert call is not None
        started.set()
        if call.cancelled.wait(NEVER):
            saw_cancel.set()

    owner.register_callback(hang, timeout=0.3)
    with pytest.raises(Timeout) as raised:
        other.call_callback("hang")
    assert raised.value.context["callback"] == "hang"
    assert started.is_set()
    assert saw_cancel.wait(NEVER), "the callback never saw its call cancelled"


def test_a_stopped_callback_server_is_a_clear_error(engine: RunningEngine) -> None:  # noqa: F811
    with SessionContext(engine.address) as other:
        owner = SessionContext(engine.address, other.session_id, token=other.token, keep_session=True).open()
        owner.register_callback(lambda: 1, name="one")
        assert other.call_callback("one") == 1
        # The registering client goes away without unregistering (its server stops).
        owner.close()
        with pytest.raises(CallbackUnavailable) as raised:
            other.call_callback("one")
        assert raised.value.context["callback"] == "one"


def test_callbacks_go_with_their_session(engine: RunningEngine) -> None:  # noqa: F811
    session = unique("cb")
    with SessionContext(engine.address, session) as owner:
        owner.register_callback(lambda: 1, name="one")
        assert owner.unregister_callback("one") is True
        assert owner.unregister_callback("one") is False
        owner.register_callback(lambda: 2, name="two")
    # Cleaned up with the session: a new session of the same id has none.
    with SessionContext(engine.address, session) as again:
        assert again.get_session().callback_count == 0
        with pytest.raises(CallbackNotFound):
            again.call_callback("two")


def test_async_callbacks_from_an_asyncio_program(engine: RunningEngine) -> None:  # noqa: F811
    async def main() -> None:
        async with AsyncSessionContext(engine.address) as ctx:
            cancelled = asyncio.Event()

            async def double(x: int) -> int:
                await asyncio.sleep(0)
                return 2 * x

            async def stuck() -> None:
                try:
                    await asyncio.sleep(NEVER)
                except asyncio.CancelledError:
                    cancelled.set()
                    raise

            def plain(x: int) -> int:
                return x + 1

            await ctx.register_callback(double)
            await ctx.register_callback(stuck, timeout=0.3)
            await ctx.register_callback(plain)
            # The async callbacks run on this loop while it awaits the engine.
            assert await ctx.call_callback("double", x=21) == 42
            assert await ctx.call_callback("plain", x=1) == 2
            with pytest.raises(Timeout):
                await ctx.call_callback("stuck")
            await asyncio.wait_for(cancelled.wait(), NEVER)

    asyncio.run(main())


_CLIENT = """
import os, sys, time
from mlbridge import SessionContext
token = os.environ.get("CALLER_TOKEN") or None
ctx = SessionContext(sys.argv[1], sys.argv[2], token=token, keep_session=True).open()
ctx.register_callback(lambda x: x + 1, name="inc", timeout=0.5)
print("ready", flush=True)
time.sleep(3600)
"""


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_a_callback_client_killed_or_stopped_never_hangs_the_caller(
    engine: RunningEngine,  # noqa: F811
    how: signal.Signals,
) -> None:
    with SessionContext(engine.address) as caller:
        # The session's token goes through the environment, as secrets should (not argv).
        env = {**os.environ, "CALLER_TOKEN": caller.token or ""}
        client = subprocess.Popen(
            [sys.executable, "-c", _CLIENT, engine.address, caller.session_id],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert client.stdout is not None and client.stdout.readline() == "ready\n"
            assert caller.call_callback("inc", x=1) == 2
            client.send_signal(how)
            if how == signal.SIGKILL:
                client.wait()
                # The process is gone: its endpoint refuses or resets the connection.
                with pytest.raises(CallbackUnavailable):
                    caller.call_callback("inc", x=1)
            else:
                # A process that stops answering runs into the callback's deadline.
                with pytest.raises(Timeout):
                    caller.call_callback("inc", x=1)
        finally:
            client.kill()
            client.wait()


def test_python_functions_as_tools_of_the_session(pair: tuple[SessionContext, SessionContext]) -> None:
    owner, other = pair

    def shout(text: str, times: int = 1) -> str:
        """Upper-cases `text`."""
        return text.upper() * times

    owner.register_tool(shout)
    other.tools.refresh()
    # Listed with typed specs from the signature, and callable by another client.
    assert str(other.tools.shout.spec.signature) == "(*, text: str, times: int = 1) -> str"
    assert other.tools.shout(text="hi", times=2) == "HIHI"
    with pytest.raises(TypeMismatch):
        other.tools.shout(text=3)
    # Unregistering the callback removes the tools it serves.
    assert owner.unregister_callback("shout") is True
    other.tools.refresh()
    assert "shout" not in other.tools


def test_a_rust_host_tool_takes_a_callback_parameter(pair: tuple[SessionContext, SessionContext]) -> None:
    owner, other = pair

    @owner.register_callback
    def square(x: int) -> int:
        return x * x

    @owner.register_callback
    def picky(x: int) -> int:
        if x == 2:
            raise ValueError("two is not allowed")
        return x

    # `map_callback` is an engine tool written in Rust: its `callback` parameter is a
    # `mlbridge::tools::Callback`, which it calls through the engine for every entry.
    calls = [{"x": n} for n in range(1, 6)]
    spec = other.tools.map_callback.spec.proto
    assert [p.name for p in spec.parameters if p.callback] == ["callback"]
    assert other.tools.map_callback(callback="square", calls=calls, concurrency=2) == [1, 4, 9, 16, 25]
    with pytest.raises(CallbackError) as raised:
        other.tools.map_callback(callback="picky", calls=calls)
    assert raised.value.remote_type == "ValueError"
    assert "two is not allowed" in raised.value.remote_traceback
    assert raised.value.context["tool"] == "map_callback"
    with pytest.raises(CallbackNotFound, match="nope"):
        other.tools.map_callback(callback="nope", calls=calls)
