"""Optimization locks from Python against a real engine: ``with ctx.optimization(...)`` and
its asyncio twin. Contention names the holder, writes need the token, a lease that is not
renewed frees the variables and fences its token, the background renewal (thread / task)
keeps the lock, the block's end writes final values atomically, reads and watch events show
the optimizer, and cleaning the session up releases its locks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from mlbridge import (
    AsyncSessionContext,
    ConstraintViolation,
    Constraints,
    LockNotHeld,
    OptimizationLock,
    SessionContext,
    UpdateKind,
    VariableLocked,
)
from sdk_engine import address, ctx, engine, unique  # noqa: F401

T = TypeVar("T")

BOUNDED = Constraints(min=0.0, max=2.0)


def run(test: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(test, timeout=60))


def variables(ctx: SessionContext, *names: str) -> None:
    for name in names:
        ctx.register_variable(name, "float", 0.5, BOUNDED)


def test_two_optimizers_contend_and_the_loser_is_told_the_holder(ctx: SessionContext, address: str) -> None:
    variables(ctx, "temperature", "top_p")
    with SessionContext(address, ctx.session_id, token=ctx.token) as other:
        locks = [
            ctx.optimization(["temperature"], optimizer_id="tune-a"),
            other.optimization(["top_p", "temperature"], optimizer_id="tune-b"),
        ]
        start = threading.Barrier(2)
        outcomes: list[OptimizationLock | VariableLocked] = []

        def contend(lock: OptimizationLock) -> None:
            start.wait()
            try:
                lock.start()
                outcomes.append(lock)
            except VariableLocked as error:
                outcomes.append(error)

        threads = [threading.Thread(target=contend, args=(lock,)) for lock in locks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        held = [o for o in outcomes if isinstance(o, OptimizationLock)]
        refused = [o for o in outcomes if isinstance(o, VariableLocked)]
        assert len(held) == 1 and len(refused) == 1, outcomes
        winner, error = held[0], refused[0]
        assert error.context["variable"] == "temperature"
        assert error.context["optimizer_id"] == winner.optimizer_id
        assert winner.expires_at is not None
        assert error.context["expires_at"] == winner.expires_at.isoformat()
        assert f"`{winner.optimizer_id}`" in error.message
        winner.stop()
        # Released: the other optimizer gets both variables now.
        with other.optimization(["top_p", "temperature"], optimizer_id="tune-b") as lock:
            assert lock.token


def test_a_write_without_the_token_is_refused_and_with_it_accepted(ctx: SessionContext) -> None:
    variables(ctx, "temperature", "free")
    with ctx.optimization(["temperature"], optimizer_id="tune-1") as lock:
        with pytest.raises(VariableLocked) as refused:
            ctx.set_variable("temperature", 1.0)
        assert refused.value.context["optimizer_id"] == "tune-1"
        assert lock.expires_at is not None
        assert refused.value.context["expires_at"]
        assert "tune-1" in refused.value.message
        with pytest.raises(VariableLocked):
            ctx.rollback("temperature", 1)
        with pytest.raises(VariableLocked):
            ctx.delete_variable("temperature")
        results = ctx.set_variables({"temperature": 1.0, "free": 1.0}, atomic=False)
        assert isinstance(results[0].error, VariableLocked) and results[1].ok
        assert ctx.get_variable("temperature") == 0.5

        written = lock.set("temperature", 1.25, metadata={"trial": "1"})
        assert (written.version, written.source) == (2, "optimizer:tune-1")
        assert [r.version for r in lock.set_variables({"temperature": 1.5})] == [3]
        assert lock.rollback("temperature", 2).value == 1.25
        assert ctx.get_variable("temperature") == 1.25
        # The token covers only the locked variables.
        with pytest.raises(LockNotHeld):
            lock.set("free", 0.1)
    ctx.set_variable("temperature", 0.1)


def test_a_lease_not_renewed_frees_the_variables_and_fences_its_token(ctx: SessionContext) -> None:
    variables(ctx, "temperature")
    lease = 0.3
    lock = ctx.optimization(["temperature"], optimizer_id="tune-1", lease=lease, renew_every=3600)
    lock.start()
    assert ctx.describe_variable("temperature").optimizing
    time.sleep(lease * 2)  # well past the lease, never renewed
    described = ctx.describe_variable("temperature")
    assert not described.optimizing and described.optimizer_id == ""
    ctx.set_variable("temperature", 1.0)
    with pytest.raises(LockNotHeld):
        lock.set("temperature", 1.5)
    with pytest.raises(LockNotHeld):
        lock.renew()
    with ctx.optimization(["temperature"], optimizer_id="tune-2"):
        with pytest.raises(LockNotHeld):
            lock.set("temperature", 1.5)
    with pytest.raises(LockNotHeld):
        lock.stop()
    assert ctx.get_variable("temperature") == 1.0


def test_the_background_thread_renews_the_lease(ctx: SessionContext) -> None:
    variables(ctx, "temperature")
    lease = 1.5
    with ctx.optimization(["temperature"], optimizer_id="tune-1", lease=lease, renew_every=0.1) as lock:
        first = lock.expires_at
        time.sleep(lease * 2)  # twice the lease: only renewals keep it
        assert lock.renewal_error is None
        assert lock.expires_at is not None and first is not None and lock.expires_at > first
        with pytest.raises(VariableLocked):
            ctx.set_variable("temperature", 1.0)
        lock.set("temperature", 1.0)
    ctx.set_variable("temperature", 0.2)


def test_final_values_are_written_atomically_when_the_block_ends(ctx: SessionContext) -> None:
    variables(ctx, "temperature", "top_p")
    watch = ctx.watch(["temperature", "top_p"], from_version=ctx.get_session().current_sequence)
    # One bad final value: nothing is written, and the block's end still releases the lock.
    with pytest.raises(ConstraintViolation):
        with ctx.optimization(["temperature", "top_p"], optimizer_id="tune-1") as lock:
            lock.final_values.update(temperature=1.5, top_p=7.0)
    assert ctx.get_variables(["temperature", "top_p"]) == {"temperature": 0.5, "top_p": 0.5}
    assert not ctx.describe_variable("temperature").optimizing
    # An explicit stop that fails keeps the lock (the engine's rule).
    lock = ctx.optimization(["temperature", "top_p"], optimizer_id="tune-1")
    lock.start()
    with pytest.raises(ConstraintViolation):
        lock.stop({"top_p": 7.0})
    with pytest.raises(VariableLocked):
        ctx.set_variable("top_p", 1.0)
    lock.stop()
    # A block that raises releases without writing.
    with pytest.raises(KeyError):
        with ctx.optimization(["temperature", "top_p"], optimizer_id="tune-0") as lock:
            lock.final_values["temperature"] = 1.0
            raise KeyError("the optimizer failed")
    assert ctx.get_variable("temperature") == 0.5
    with ctx.optimization(["temperature", "top_p"], optimizer_id="tune-1") as lock:
        lock.final_values["temperature"] = 1.5
        lock.final_values["top_p"] = 0.25
    assert ctx.get_variables(["temperature", "top_p"]) == {"temperature": 1.5, "top_p": 0.25}
    first, second = next(watch), next(watch)
    watch.close()
    assert (first.name, second.name) == ("temperature", "top_p")
    assert second.sequence == first.sequence + 1
    assert first.source == "optimizer:tune-1"
    assert first.variable is not None and not first.variable.optimizing
    ctx.set_variable("temperature", 0.1)


def test_reads_and_watch_events_show_the_optimizer(ctx: SessionContext) -> None:
    variables(ctx, "temperature", "free")
    assert not ctx.describe_variable("temperature").optimizing  # now cached
    watch = ctx.watch(["temperature"], from_version=ctx.get_session().current_sequence)
    with ctx.optimization(["temperature"], optimizer_id="tune-1") as lock:
        described = ctx.describe_variable("temperature")
        assert described.optimizing and described.optimizer_id == "tune-1"
        listed = {v.name: (v.optimizing, v.optimizer_id) for v in ctx.list_variables()}
        assert listed == {"free": (False, ""), "temperature": (True, "tune-1")}
        lock.set("temperature", 1.0, metadata={"trial": "3"})
        update = next(watch)
        assert update.kind == UpdateKind.SET and update.metadata["trial"] == "3"
        assert update.variable is not None
        assert (update.variable.optimizing, update.variable.optimizer_id) == (True, "tune-1")
    watch.close()
    assert not ctx.describe_variable("temperature").optimizing


def test_cleaning_the_session_up_releases_its_locks(address: str) -> None:
    session_id = unique("locks")
    first = SessionContext(address, session_id).open()
    first.register_variable("temperature", "float", 0.5)
    lock = first.optimization(["temperature"], optimizer_id="tune-1", lease=600)
    lock.start()
    first.close()
    with SessionContext(address, session_id) as again:
        assert again.created
        again.register_variable("temperature", "float", 0.5)
        assert not again.describe_variable("temperature").optimizing
        again.set_variable("temperature", 1.0)
        with again.optimization(["temperature"], optimizer_id="tune-2") as relocked:
            relocked.set("temperature", 1.5)


def test_asyncio_twin(address: str) -> None:
    async def body() -> None:
        async with AsyncSessionContext(address) as ctx:
            await ctx.register_variable("temperature", "float", 0.5, BOUNDED)
            lease = 1.5
            async with ctx.optimization(
                ["temperature"], optimizer_id="tune-1", lease=lease, renew_every=0.1
            ) as lock:
                first = lock.expires_at
                with pytest.raises(VariableLocked) as refused:
                    async with ctx.optimization("temperature", optimizer_id="tune-2"):
                        pass
                assert refused.value.context["optimizer_id"] == "tune-1"
                with pytest.raises(VariableLocked):
                    await ctx.set_variable("temperature", 1.0)
                await lock.set("temperature", 1.0)
                await asyncio.sleep(lease * 2)  # only the renewal task keeps the lock
                assert lock.renewal_error is None
                assert lock.expires_at is not None and first is not None and lock.expires_at > first
                assert (await ctx.describe_variable("temperature")).optimizer_id == "tune-1"
                lock.final_values["temperature"] = 1.75
            assert await ctx.get_variable("temperature") == 1.75
            described = await ctx.describe_variable("temperature")
            assert not described.optimizing and described.source == "optimizer:tune-1"
            expired = ctx.optimization(["temperature"], optimizer_id="tune-3", lease=0.2, renew_every=3600)
            await expired.start()
            await asyncio.sleep(0.5)
            await ctx.set_variable("temperature", 0.3)
            with pytest.raises(LockNotHeld):
                await expired.set("temperature", 0.4)
            with pytest.raises(LockNotHeld):
                await expired.stop()

    run(body())
