"""Session lifecycle through `SessionContext`: creation and cleanup by the context manager,
joining, keeping, TTL expiry, heartbeats, isolation, Unix sockets and bad session input."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import mlbridge
from mlbridge import InvalidArgument, SessionContext, SessionExpired, SessionNotFound, Unavailable
from sdk_engine import RunningEngine, address, ctx, engine, engines, unique  # noqa: F401


def session_exists(address: str, session_id: str) -> bool:
    with SessionContext(address, session_id, keep_session=True) as probe:
        return not probe.created


def test_the_context_manager_creates_and_cleans_up_the_session(address: str) -> None:
    with SessionContext(address) as ctx:
        assert ctx.is_open and ctx.created
        assert ctx.session.session_id == ctx.session_id != ""
        ctx.register_variable("x", "integer", 1)
        session_id = ctx.session_id
        assert ctx.get_session().variable_count == 1
    assert not ctx.is_open
    with SessionContext(address, session_id) as again:
        assert again.created, "the session should have been cleaned up on exit"
        assert again.list_variables() == []


def test_a_chosen_id_is_used_and_joining_does_not_clean_up(address: str) -> None:
    session_id = unique()
    with SessionContext(address, session_id, metadata={"app": "tests"}) as owner:
        assert owner.session_id == session_id and owner.created
        assert owner.session.metadata == {"app": "tests"}
        owner.register_variable("shared", "string", "hello")
        with SessionContext(address, session_id) as guest:
            assert not guest.created
            assert guest["shared"] == "hello"
        assert owner["shared"] == "hello", "the joining context must not clean the session up"
    assert not session_exists(address, session_id)


def test_keep_session_leaves_the_session_alive(address: str) -> None:
    session_id = unique()
    with SessionContext(address, session_id, keep_session=True) as ctx:
        ctx.register_variable("kept", "boolean", True)
    assert session_exists(address, session_id)
    with SessionContext(address, session_id, keep_session=False) as ctx:
        assert ctx["kept"] is True
    assert not session_exists(address, session_id)


def test_open_and_close_without_with(address: str) -> None:
    ctx = SessionContext(address)
    with pytest.raises(RuntimeError, match="not open"):
        ctx.get_variable("x")
    ctx.open()
    assert ctx.open() is ctx, "open is idempotent"
    ctx.register_variable("x", "float", 1.5)
    session_id = ctx.session_id
    ctx.close()
    ctx.close()
    assert not session_exists(address, session_id)


def test_an_exception_in_the_block_still_cleans_up(address: str) -> None:
    with pytest.raises(ZeroDivisionError):
        with SessionContext(address) as ctx:
            session_id = ctx.session_id
            _ = 1 / 0
    assert not session_exists(address, session_id)


def test_sessions_are_isolated(address: str) -> None:
    with SessionContext(address) as first, SessionContext(address) as second:
        first.register_variable("x", "integer", 1)
        second.register_variable("x", "string", "two")
        assert first["x"] == 1 and second["x"] == "two"
        first.delete_variable("x")
        assert second["x"] == "two"
        assert [v.name for v in second.list_variables()] == ["x"]
        assert first.list_variables() == []


def test_ttl_expiry(engines: Callable[..., RunningEngine]) -> None:
    running = engines("--sweep-interval-ms", "50")
    with SessionContext(running.address, ttl=timedelta(milliseconds=600), keep_session=True) as ctx:
        assert ctx.session.ttl == timedelta(milliseconds=600)
        ctx.register_variable("x", "integer", 1)
        time.sleep(0.35)
        ctx.heartbeat()  # activity pushes the expiry back
        time.sleep(0.35)
        assert ctx.get_session().variable_count == 1, "the heartbeat should have kept the session alive"
        time.sleep(1.0)
        with pytest.raises(SessionExpired) as raised:
            ctx.get_variable("x")
        assert raised.value.message == f"session `{ctx.session_id}` expired"
        assert raised.value.context == {"session_id": ctx.session_id}


def test_heartbeat_and_get_session(ctx: SessionContext) -> None:
    expires = ctx.heartbeat()
    info = ctx.get_session()
    assert info.session_id == ctx.session_id
    assert info.expires_at >= expires
    assert info.ttl == timedelta(hours=1)
    assert info.current_sequence == 0
    ctx.register_variable("x", "integer", 1)
    assert ctx.get_session().current_sequence == 1


def test_unix_socket_addresses(engines: Callable[..., RunningEngine], tmp_path: Path) -> None:
    running = engines(listen=f"unix:{tmp_path / 'engine.sock'}")
    assert running.address.startswith("unix:")
    with SessionContext(running.address) as ctx:
        ctx.register_variable("x", "integer", 7)
        assert ctx.tools.add(a=1, b=2) == 3.0
        assert ctx["x"] == 7


def test_bad_session_ids_and_ttls_are_rejected_like_the_engine_does(address: str) -> None:
    cases = [
        ({"session_id": "no spaces"}, "invalid session id \"no spaces\": use 1 to 128 letters, digits, '-', '_', '.' or ':'"),
        ({"session_id": "x" * 129}, f"invalid session id \"{'x' * 129}\": use 1 to 128 letters, digits, '-', '_', '.' or ':'"),
        ({"ttl": 0}, "session ttl must be greater than zero"),
        ({"ttl": -1}, "`ttl` must not be negative"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidArgument) as client_side:
            SessionContext(address, **kwargs).open()  # type: ignore[arg-type]
        assert client_side.value.message == message
        assert client_side.value.grpc_code is not None, "the engine judged it"
        with pytest.raises(InvalidArgument) as engine_side:
            SessionContext(address, validate=False, **kwargs).open()  # type: ignore[arg-type]
        assert engine_side.value.message == message
        assert engine_side.value.context == client_side.value.context


def test_unknown_sessions(address: str) -> None:
    session_id = unique("gone")
    with SessionContext(address, session_id, keep_session=True) as ctx:
        with SessionContext(address, session_id, keep_session=False):
            pass  # cleans the session up under the first context's feet
        with pytest.raises(SessionNotFound) as raised:
            ctx.get_variable("x")
        assert raised.value.message == f"session `{session_id}` not found"
        assert raised.value.context == {"session_id": session_id}
        with pytest.raises(SessionNotFound):
            ctx.register_variable("x", "integer", 1)


def test_an_unreachable_engine_is_unavailable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
        ctx = SessionContext(f"127.0.0.1:{unused.getsockname()[1]}", timeout=5)
        with pytest.raises(Unavailable) as raised:
            ctx.open()
    assert raised.value.context["grpc_code"] == "Unavailable"
    assert not ctx.is_open


def test_the_package_is_typed_and_numpy_stays_optional() -> None:
    package = Path(mlbridge.__file__).parent
    assert (package / "py.typed").exists()
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "import pickle" not in text and "eval(" not in text, source.name
    probe = "import sys, mlbridge; print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", "importing mlbridge must not import numpy"
