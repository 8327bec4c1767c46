"""`AsyncSessionContext`: the asyncio twins of the main paths (lifecycle, variables,
checks, batches, history, watch with resume, cache invalidation, tools, errors)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mlbridge import (
    AsyncSessionContext,
    AsyncWatch,
    ConstraintViolation,
    Constraints,
    InvalidArgument,
    SessionContext,
    SessionNotFound,
    ToolError,
    ToolNotFound,
    TypeMismatch,
    UpdateKind,
    VariableNotFound,
    VariableUpdate,
    VersionConflict,
)
from sdk_engine import TcpProxy, address, engine, proxy  # noqa: F401

T = TypeVar("T")


def run(test: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(asyncio.wait_for(test(), timeout=60))


async def take(watch: AsyncWatch, count: int, timeout: float = 20.0) -> list[VariableUpdate]:
    async def collect() -> list[VariableUpdate]:
        return [await watch.__anext__() for _ in range(count)]

    return await asyncio.wait_for(collect(), timeout)


async def eventually(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float = 5.0) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await probe()
        if accept(result) or loop.time() > deadline:
            return result
        await asyncio.sleep(0.01)


def test_lifecycle(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address) as ctx:
            assert ctx.is_open and ctx.created
            await ctx.register_variable("x", "integer", 1)
            session_id = ctx.session_id
            async with AsyncSessionContext(address, session_id, token=ctx.token) as guest:
                assert not guest.created and await guest["x"] == 1
            assert (await ctx.get_session()).variable_count == 1
            await ctx.heartbeat()
        assert not ctx.is_open
        async with AsyncSessionContext(address, session_id) as again:
            assert again.created, "the first context cleaned the session up"
        kept = AsyncSessionContext(address, keep_session=True)
        with pytest.raises(RuntimeError, match="not open"):
            await kept.get_variable("x")
        await kept.open()
        await kept.close()
        async with AsyncSessionContext(address, kept.session_id, token=kept.token) as joined:
            assert not joined.created

    run(body)


def test_variables(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address) as ctx:
            variable = await ctx.register_variable("temperature", "float", 0.5, Constraints(min=0, max=2))
            assert variable.version == 1
            assert (await ctx.set_variable("temperature", 1)).value == 1.0
            assert await ctx["temperature"] == 1.0 and await ctx.v.temperature == 1.0
            with pytest.raises(TypeError, match="await ctx.set_variable"):
                ctx["temperature"] = 2
            with pytest.raises(TypeError):
                ctx.v.temperature = 2
            with pytest.raises(VersionConflict):
                await ctx.set_variable("temperature", 1.5, expected_version=1)
            with pytest.raises(ConstraintViolation) as raised:
                await ctx.set_variable("temperature", 3)
            assert raised.value.message == "variable `temperature`: 3 is above the maximum 2"
            assert raised.value.grpc_code is not None, "the engine judged it"
            await ctx.register_variable("mode", "choice", "a", Constraints(choices=["a", "b"]))
            assert [v.name for v in await ctx.list_variables("t*")] == ["temperature"]
            with pytest.raises(InvalidArgument, match="malformed pattern"):
                await ctx.list_variables("[")
            assert await ctx.get_variables(["mode", "temperature", "nope"]) == {"mode": "a", "temperature": 1.0}
            results = await ctx.set_variables({"temperature": 0.25, "mode": "b"})
            assert all(r.ok for r in results)
            with pytest.raises(ConstraintViolation):
                await ctx.set_variables({"temperature": 0.5, "mode": "z"})
            assert (await ctx.describe_variable("temperature")).value == 0.25
            partial = await ctx.set_variables({"temperature": 0.75, "mode": "z"}, atomic=False)
            assert [r.ok for r in partial] == [True, False]
            async with ctx.batch() as batch:
                batch["temperature"] = 1.25
                batch["mode"] = "a"
            assert batch.results is not None and await ctx.get_variables(["temperature", "mode"]) == {
                "temperature": 1.25,
                "mode": "a",
            }
            with pytest.raises(RuntimeError):
                async with ctx.batch() as abandoned:
                    abandoned["temperature"] = 1.5
                    raise RuntimeError("abandon")
            assert await ctx["temperature"] == 1.25
            history = await ctx.history("temperature")
            assert [h.value for h in history][:2] == [1.25, 0.75]
            rolled = await ctx.rollback("temperature", 1)
            assert rolled.value == 0.5 and await ctx["temperature"] == 0.5
            await ctx.delete_variable("mode")
            with pytest.raises(VariableNotFound):
                await ctx.get_variable("mode")

    run(body)


def test_engine_and_client_agree(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address) as ctx, AsyncSessionContext(
            address, ctx.session_id, token=ctx.token, validate=False, cache=False
        ) as raw:
            await ctx.register_variable("n", "integer", 1, Constraints(max=10))
            for client in (ctx, raw):
                with pytest.raises(TypeMismatch) as mismatch:
                    await client.set_variable("n", "ten")
                assert mismatch.value.message == "variable `n` expects integer, got string"
                with pytest.raises(ConstraintViolation) as violation:
                    await client.set_variable("n", 11)
                assert violation.value.message == "variable `n`: 11 is above the maximum 10"
            with pytest.raises(InvalidArgument) as definition:
                await raw.register_variable("s", "string", "x", Constraints(min=1))
            assert definition.value.message == "constraints of `s`: min/max do not apply to string"

    run(body)


def test_watch_in_order_and_resume(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address) as ctx:
            await ctx.register_variable("x", "integer", 0)
            async with ctx.watch("x") as watch:
                initial = await take(watch, 1)
                assert (initial[0].kind, initial[0].value) == (UpdateKind.INITIAL, 0)
                writes = [ctx.set_variable("x", value) for value in range(1, 201)]
                for write in writes:
                    await write
                updates = await take(watch, 200)
                assert [u.value for u in updates] == list(range(1, 201))
                assert watch.synced
                resume_at = updates[99].sequence
            async with ctx.watch(from_version=resume_at) as resumed:
                again = await take(resumed, 100)
            assert [u.value for u in again] == list(range(101, 201))

    run(body)


def test_watch_reconnects_after_a_dropped_connection(address: str, proxy: TcpProxy) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address) as ctx:
            await ctx.register_variable("x", "integer", 0)
            async with AsyncSessionContext(proxy.address, ctx.session_id, token=ctx.token, cache=False) as remote:
                async with remote.watch("x") as watch:
                    first = await take(watch, 1)
                    proxy.drop()
                    for value in range(1, 11):
                        await ctx.set_variable("x", value)
                    rest = await take(watch, 10)
            assert [u.value for u in first + rest] == list(range(0, 11))

    run(body)


def test_watch_errors(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address, keep_session=True) as ctx:
            await ctx.register_variable("x", "integer", 0)
            with pytest.raises(InvalidArgument, match="cannot resume from sequence 50"):
                await take(ctx.watch(from_version=50), 1)
            watch = ctx.watch("x")
            await take(watch, 1)
            async with AsyncSessionContext(address, ctx.session_id, token=ctx.token, keep_session=False):
                pass  # another client cleans the session up
            with pytest.raises(SessionNotFound):
                await take(watch, 1)

    run(body)


def test_cache_invalidation_by_another_client(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address, cache_ttl=600) as reader:
            await reader.register_variable("x", "integer", 1)
            assert await reader["x"] == 1  # the first read starts the background watch
            assert (await eventually(lambda: asyncio.sleep(0, reader.cache_live), bool)) is True
            assert await reader["x"] == 1
            with SessionContext(address, reader.session_id, token=reader.token) as writer:
                for value in range(2, 5):
                    writer["x"] = value
                    seen = await eventually(lambda: reader.get_variable("x"), lambda v, value=value: v == value)  # type: ignore[misc]
                    assert seen == value

    run(body)


def test_tools(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address) as ctx, AsyncSessionContext(
            address, ctx.session_id, token=ctx.token, validate=False
        ) as raw:
            if "add" not in ctx.tools or "count" not in ctx.tools:
                pytest.fail("the engine does not offer the built-in tools `add` and `count` yet")
            assert str(inspect.signature(ctx.tools.add)) == "(*, a: float, b: float) -> float"
            assert await ctx.tools.add(a=1, b=2.5) == 3.5
            assert await ctx.call_tool("word_count", text="a b c") == 3
            assert [chunk async for chunk in ctx.tools.count.stream(to=4)] == [0, 1, 2, 3]
            with pytest.raises(ToolError) as failed:
                await ctx.tools.fail(message="boom")
            assert failed.value.message == "tool `fail` failed: boom"
            for client in (ctx, raw):
                with pytest.raises(InvalidArgument) as missing:
                    await client.tools.add(a=1)
                assert missing.value.message == "tool `add` needs argument `b` (float)"
            with pytest.raises(ToolNotFound):
                ctx.tools.no_such_tool
            assert await ctx.tools.refresh() is ctx.tools

    run(body)
