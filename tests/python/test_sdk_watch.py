"""`SessionContext.watch`: ordered, lossless change streams with initial values, name
filters, resumption (after a real dropped connection too) and the errors that end them."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import pytest

from mlbridge import (
    InvalidArgument,
    SessionContext,
    SessionNotFound,
    Unavailable,
    UpdateKind,
    VariableUpdate,
    Watch,
    WatchLagged,
)
from sdk_engine import TcpProxy, address, ctx, engine, proxy, raw  # noqa: F401


def take(watch: Watch, count: int, timeout: float = 20.0) -> list[VariableUpdate]:
    """The next `count` updates; fails (and closes the watch) if they do not come in time."""

    def collect() -> list[VariableUpdate]:
        return [next(watch) for _ in range(count)]

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(collect)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            watch.close()
            pytest.fail(f"fewer than {count} updates arrived within {timeout}s")


def test_a_thousand_updates_arrive_in_order_and_none_is_lost(ctx: SessionContext, address: str) -> None:
    names = [f"v{i}" for i in range(10)]
    for name in names:
        ctx.register_variable(name, "integer", 0)
    start = ctx.get_session().current_sequence
    with ctx.watch(from_version=start) as watch:
        received: list[VariableUpdate] = []
        consumer = threading.Thread(target=lambda: received.extend(take(watch, 1000)))
        consumer.start()
        with SessionContext(address, ctx.session_id, token=ctx.token) as writer:
            for step in range(1, 51):  # 50 atomic batches of 10 writes ...
                writer.set_variables({name: step for name in names})
            for step in range(51, 101):  # ... and 500 single writes
                for name in names:
                    writer.set_variable(name, step)
        consumer.join(timeout=30)
    assert len(received) == 1000
    assert [u.sequence for u in received] == list(range(start + 1, start + 1001))
    assert all(u.kind is UpdateKind.SET for u in received)
    for name in names:
        mine = [u for u in received if u.name == name]
        assert [u.value for u in mine] == list(range(1, 101))
        assert [u.version for u in mine] == list(range(2, 102))
        assert [u.old_value for u in mine] == list(range(0, 100))


def test_initial_values_then_live_changes(ctx: SessionContext) -> None:
    ctx.register_variable("b", "string", "bee")
    ctx.register_variable("a", "integer", 1)
    snapshot = ctx.get_session().current_sequence
    with ctx.watch() as watch:
        initial = take(watch, 2)
        assert [(u.kind, u.name, u.value) for u in initial] == [
            (UpdateKind.INITIAL, "a", 1),
            (UpdateKind.INITIAL, "b", "bee"),
        ]
        assert all(u.sequence == snapshot for u in initial)
        ctx.set_variable("a", 2, metadata={"why": "test"})
        ctx.register_variable("c", "boolean", True)
        ctx.rollback("a", 1)
        ctx.delete_variable("b")
        live = take(watch, 4)
        assert watch.synced and watch.synced_sequence == snapshot
    assert [(u.kind, u.name, u.value, u.old_value) for u in live] == [
        (UpdateKind.SET, "a", 2, 1),
        (UpdateKind.REGISTERED, "c", True, None),
        (UpdateKind.ROLLED_BACK, "a", 1, 2),
        (UpdateKind.DELETED, "b", "bee", "bee"),
    ]
    assert live[0].metadata == {"why": "test"} and live[0].source.startswith("python:pid-")
    assert live[0].variable is not None and live[0].variable.version == 2
    assert all(u.timestamp is not None for u in live)


def test_name_filters(ctx: SessionContext) -> None:
    ctx.register_variable("watched", "integer", 0)
    ctx.register_variable("ignored", "integer", 0)
    with ctx.watch(["watched", "later"]) as watch:
        assert [(u.name, u.kind) for u in take(watch, 1)] == [("watched", UpdateKind.INITIAL)]
        ctx.set_variable("ignored", 1)
        ctx.set_variable("watched", 1)
        ctx.register_variable("later", "string", "registered later")
        ctx.set_variable("ignored", 2)
        ctx.set_variable("watched", 2)
        names = [(u.name, u.kind, u.value) for u in take(watch, 3)]
    assert names == [
        ("watched", UpdateKind.SET, 1),
        ("later", UpdateKind.REGISTERED, "registered later"),
        ("watched", UpdateKind.SET, 2),
    ]
    with ctx.watch("watched") as single:
        assert take(single, 1)[0].value == 2


def test_resume_from_version_after_a_dropped_connection(ctx: SessionContext, proxy: TcpProxy) -> None:
    ctx.register_variable("x", "integer", 0)
    with SessionContext(proxy.address, ctx.session_id, token=ctx.token, cache=False) as remote:
        watch = remote.watch("x", reconnect=False)
        seen = take(watch, 1)  # INITIAL: the stream is open
        ctx.set_variable("x", 1)
        seen += take(watch, 1)
        proxy.drop()
        with pytest.raises(Unavailable):
            next(watch)
        for value in range(2, 6):  # written while nobody watches
            ctx.set_variable("x", value)
        resumed = remote.watch("x", from_version=watch.last_sequence, reconnect=False)
        replayed = take(resumed, 4)
        ctx.set_variable("x", 6)
        live = take(resumed, 1)
        resumed.close()
    assert [u.kind for u in seen] == [UpdateKind.INITIAL, UpdateKind.SET]
    assert [u.value for u in seen + replayed + live] == [0, 1, 2, 3, 4, 5, 6]
    sequences = [u.sequence for u in seen + replayed + live]
    assert sequences == sorted(set(sequences))


def test_automatic_reconnect_loses_and_repeats_nothing(ctx: SessionContext, proxy: TcpProxy) -> None:
    ctx.register_variable("x", "integer", 0)
    with SessionContext(proxy.address, ctx.session_id, token=ctx.token, cache=False) as remote:
        with remote.watch("x") as watch:
            first = take(watch, 1)
            proxy.drop()
            for value in range(1, 21):
                ctx.set_variable("x", value)
                if value == 10:
                    proxy.drop()
            rest = take(watch, 20)
    assert [u.value for u in first + rest] == list(range(0, 21))
    assert [u.kind for u in rest] == [UpdateKind.SET] * 20


RETAINED_CHANGES = 4096  # the engine's default (Limits::retained_changes)


def test_resuming_from_a_change_no_longer_retained_is_lagged(ctx: SessionContext) -> None:
    names = [f"n{i}" for i in range(100)]
    for name in names:
        ctx.register_variable(name, "integer", 0)
    for step in range(1, 42):
        ctx.set_variables({name: step for name in names})
    current = ctx.get_session().current_sequence
    assert current == 4200
    with ctx.watch(from_version=1) as watch, pytest.raises(WatchLagged) as raised:
        next(watch)
    oldest = current - RETAINED_CHANGES + 1
    assert raised.value.message == (
        f"cannot resume from sequence 1: the oldest retained change is {oldest}; re-subscribe with initial values"
    )
    assert raised.value.context == {"last_sequence": "1", "oldest_retained_sequence": str(oldest)}
    with ctx.watch(from_version=oldest - 1) as fine:
        assert take(fine, 1)[0].sequence == oldest


def test_resuming_from_the_future_is_invalid(ctx: SessionContext) -> None:
    ctx.register_variable("x", "integer", 0)
    with ctx.watch(from_version=99) as watch, pytest.raises(InvalidArgument) as raised:
        next(watch)
    assert raised.value.message == f"cannot resume from sequence 99: session `{ctx.session_id}` is at 1"


def test_cleanup_ends_the_stream(address: str) -> None:
    with SessionContext(address, keep_session=True) as ctx:
        ctx.register_variable("x", "integer", 0)
        watch = ctx.watch("x")
        assert take(watch, 1)[0].kind is UpdateKind.INITIAL
        with SessionContext(address, ctx.session_id, token=ctx.token, keep_session=False):
            pass
        with pytest.raises(SessionNotFound):
            take(watch, 1)


def test_closing_a_watch_ends_iteration(ctx: SessionContext) -> None:
    ctx.register_variable("x", "integer", 0)
    watch = ctx.watch("x")
    assert take(watch, 1)[0].value == 0
    closer = threading.Timer(0.2, watch.close)
    closer.start()
    assert list(watch) == [], "a closed watch ends without an error"
    closer.join()


def test_include_initial_is_ignored_when_resuming(ctx: SessionContext, raw: SessionContext) -> None:
    ctx.register_variable("x", "integer", 0)
    ctx.set_variable("x", 1)
    with raw.watch("x", include_initial=True, from_version=1) as watch:
        update = take(watch, 1)[0]
    assert (update.kind, update.value, update.sequence) == (UpdateKind.SET, 1, 2)



def test_a_watch_ends_when_its_context_closes(ctx: SessionContext, address: str) -> None:
    ctx.register_variable("x", "integer", 0)
    other = SessionContext(address, ctx.session_id, token=ctx.token).open()
    watch = other.watch("x")
    assert take(watch, 1)[0].value == 0
    closer = threading.Timer(0.2, other.close)
    closer.start()
    assert list(watch) == []
    closer.join()
