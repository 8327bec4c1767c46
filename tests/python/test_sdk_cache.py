"""The read cache: values are served locally, another client's write is seen within the
watch latency (not the TTL), and without a watch the TTL bounds staleness."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from mlbridge import SessionContext, VariableNotFound
from sdk_engine import RunningEngine, TcpProxy, address, ctx, engine, engines, eventually, proxy  # noqa: F401


def test_another_clients_write_is_seen_within_the_watch_latency(ctx: SessionContext, address: str) -> None:
    reader_ctx = SessionContext(address, ctx.session_id, token=ctx.token, cache_ttl=600)
    with reader_ctx as reader, SessionContext(address, ctx.session_id, token=ctx.token) as writer:
        ctx.register_variable("x", "integer", 1)
        assert reader["x"] == 1  # the first read starts the background watch
        assert eventually(lambda: reader.cache_live, bool), "the background watch should go live"
        assert reader["x"] == 1  # now cached for up to 10 minutes
        for value in range(2, 7):
            writer["x"] = value
            seen = eventually(lambda: reader["x"], lambda v, value=value: v == value)  # type: ignore[misc]
            assert seen == value, "the watch should have invalidated the cached value"
        writer.delete_variable("x")
        with pytest.raises(VariableNotFound):
            eventually(lambda: reader["x"], lambda v: False, timeout=5)


def test_without_the_watch_the_ttl_bounds_staleness(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("x", "integer", 1)
    with SessionContext(address, ctx.session_id, token=ctx.token, watch_cache=False, cache_ttl=0.3) as reader:
        assert reader["x"] == 1
        ctx["x"] = 2
        assert reader["x"] == 1, "a cached value is served until its TTL runs out"
        time.sleep(0.4)
        assert reader["x"] == 2


def test_cached_reads_do_not_reach_the_engine(engines: Callable[..., RunningEngine]) -> None:
    running = engines()
    with SessionContext(running.address, watch_cache=False, cache_ttl=600, keep_session=True) as ctx:
        ctx.register_variable("x", "string", "cached")
        ctx.register_variable("y", "integer", 2)
        assert ctx.get_variables(["x", "y"]) == {"x": "cached", "y": 2}
        running.stop()
        assert ctx["x"] == "cached" and ctx.v.y == 2
        assert ctx.get_variables(["y", "x"]) == {"y": 2, "x": "cached"}


def test_the_watch_starts_with_the_first_read_and_misses_nothing_since_open(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("x", "integer", 1)
    ctx.register_variable("y", "integer", 1)
    with SessionContext(address, ctx.session_id, token=ctx.token, cache_ttl=600) as reader:
        # A context that only writes (e.g. one driving an optimizer) keeps no watch open.
        reader["x"] = 2  # cached by the reader as written
        ctx["x"] = 3  # then changed by another client, before the reader watches
        assert reader._watcher is None
        assert not reader.cache_live
        # The first read starts the watch from the session's sequence at open, so the
        # other client's write is replayed and the reader's own cached `x` is not served.
        assert reader["y"] == 1
        assert eventually(lambda: reader.cache_live, bool)
        assert reader["x"] == 3


def test_cached_values_handed_out_cannot_change_the_cache(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("xs", "list", [1, 2])
    ctx.register_variable("t", "float", 0.5)
    with SessionContext(address, ctx.session_id, token=ctx.token, watch_cache=False, cache_ttl=600) as reader:
        assert reader["t"] == 0.5 and reader["t"] == 0.5  # a scalar: decoded once, then shared
        mine = reader["xs"]
        mine.append(3)
        assert reader["xs"] == [1, 2], "a list is decoded anew for every cached read"
        assert reader["xs"] is not reader["xs"]


def test_the_cache_can_be_disabled(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("x", "integer", 1)
    with SessionContext(address, ctx.session_id, token=ctx.token, cache=False) as reader:
        assert reader["x"] == 1
        ctx["x"] = 2
        assert reader["x"] == 2, "without a cache every read goes to the engine"
        assert not reader.cache_live


def test_own_writes_are_read_back_at_once(ctx: SessionContext) -> None:
    ctx.register_variable("x", "integer", 1)
    for value in range(2, 50):
        ctx["x"] = value
        assert ctx["x"] == value
    with ctx.batch() as batch:
        batch["x"] = 100
    assert ctx["x"] == 100
    ctx.rollback("x", 1)
    assert ctx["x"] == 1


def test_the_cache_recovers_after_a_dropped_connection(ctx: SessionContext, proxy: TcpProxy) -> None:
    ctx.register_variable("x", "integer", 1)
    with SessionContext(proxy.address, ctx.session_id, token=ctx.token, cache_ttl=600) as reader:
        assert reader["x"] == 1
        assert eventually(lambda: reader.cache_live, bool)
        proxy.drop()
        ctx["x"] = 2  # possibly while the reader's watch is down
        assert eventually(lambda: reader["x"], lambda v: v == 2) == 2
        assert eventually(lambda: reader.cache_live, bool), "the watch resumes"
        ctx["x"] = 3
        assert eventually(lambda: reader["x"], lambda v: v == 3) == 3
