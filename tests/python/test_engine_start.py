"""`mlbridge.Engine.start` and `mlbridge.AsyncEngine.start`: launching a local engine from
Python, finding its binary, failing with the engine's own words, and never leaving an
engine behind (stop, context managers, atexit, and the death of the Python process).

Runs the repository's engine (``$MLBRIDGE_ENGINE`` or target/debug/mlbridge), and small
stand-in scripts where a misbehaving engine is needed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sdk_engine import eventually

import mlbridge
from mlbridge import AsyncEngine, AsyncSessionContext, Engine, EngineNotFoundError, EngineStartError, SessionContext
from mlbridge.engine import PACKAGED_ENGINE, _address_from_ready_line


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    return True


def _stand_in(tmp_path: Path, body: str) -> Path:
    """An executable that plays the engine: a Python script running `body`."""
    path = tmp_path / "fake-engine"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def test_start_serves_a_session_on_a_private_unix_socket(engine_bin: Path) -> None:
    with Engine.start(binary=engine_bin) as engine:
        assert engine.address.startswith("unix:")
        socket = Path(engine.address.removeprefix("unix:"))
        assert socket.exists() and (socket.parent.stat().st_mode & 0o077) == 0
        assert engine.binary == engine_bin and engine.running and _alive(engine.pid)
        with SessionContext(engine.address) as ctx:
            ctx.register_variable("x", "integer", 1)
            ctx.set_variable("x", 2)
            assert ctx.get_variable("x") == 2
    assert not engine.running and engine.returncode == 0
    assert not socket.parent.exists()
    assert not _alive(engine.pid)


def test_start_on_tcp_reports_the_port_the_engine_picked(engine_bin: Path) -> None:
    with Engine.start(binary=engine_bin, listen="127.0.0.1:0", extra_args=["--max-sessions", "3"]) as engine:
        host, port = engine.address.rsplit(":", 1)
        assert host == "127.0.0.1" and int(port) > 0
        with SessionContext(engine.address) as ctx:
            assert ctx.session_id


def test_a_failed_start_carries_the_engines_stderr(engine_bin: Path) -> None:
    with pytest.raises(EngineStartError) as caught:
        Engine.start(binary=engine_bin, extra_args=["--max-sessions", "many"])
    message = str(caught.value)
    assert "exited with status 2" in message
    assert "invalid value 'many'" in message and "invalid value 'many'" in caught.value.stderr_tail


def test_an_engine_that_never_serves_is_killed_after_the_startup_timeout(tmp_path: Path) -> None:
    fake = _stand_in(
        tmp_path,
        """
        import os, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("warming up", file=sys.stderr, flush=True)
        open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
        time.sleep(3600)
        """,
    )
    pid_file = tmp_path / "pid"
    with pytest.raises(EngineStartError, match="did not serve within") as caught:
        Engine.start(binary=fake, startup_timeout=2.0, env={**os.environ, "PID_FILE": str(pid_file)})
    assert "warming up" in caught.value.stderr_tail
    assert not _alive(int(pid_file.read_text()))


def test_a_line_that_is_not_the_ready_line_fails_the_start(tmp_path: Path) -> None:
    fake = _stand_in(tmp_path, 'import time; print("hello", flush=True); time.sleep(3600)\n')
    with pytest.raises(EngineStartError, match="not its ready line"):
        Engine.start(binary=fake)


def test_stop_is_idempotent_and_kills_an_engine_that_ignores_sigterm(tmp_path: Path) -> None:
    fake = _stand_in(
        tmp_path,
        """
        import signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        listen = sys.argv[sys.argv.index("--listen") + 1]
        print("fake engine listening on " + listen.replace(":0", ":4242"), flush=True)
        time.sleep(3600)
        """,
    )
    engine = Engine.start(binary=fake, listen="127.0.0.1:0")
    assert engine.address == "127.0.0.1:4242"
    assert engine.stop(grace=0.5) == -signal.SIGKILL
    assert engine.stop() == -signal.SIGKILL
    assert not _alive(engine.pid)


def test_stop_twice_on_a_real_engine(engine_bin: Path) -> None:
    engine = Engine.start(binary=engine_bin)
    assert engine.stop() == 0
    assert engine.stop() == 0
    with engine:  # leaving the block stops it again: nothing happens
        pass
    assert engine.returncode == 0


def test_the_binary_comes_from_the_argument_then_the_environment(
    engine_bin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLBRIDGE_ENGINE", str(engine_bin))
    with Engine.start() as engine:
        assert engine.binary == engine_bin
    monkeypatch.setenv("MLBRIDGE_ENGINE", str(tmp_path / "missing"))
    with pytest.raises(EngineNotFoundError, match="MLBRIDGE_ENGINE") as caught:
        Engine.start()
    assert len(caught.value.tried) == 1  # a named binary that is missing is not skipped
    with Engine.start(binary=engine_bin) as engine:  # the argument comes first
        assert engine.binary == engine_bin


def test_not_found_names_every_place_tried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLBRIDGE_ENGINE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    if PACKAGED_ENGINE.exists():
        pytest.skip("this mlbridge is an installed wheel with its engine")
    with pytest.raises(EngineNotFoundError) as caught:
        Engine.start()
    message = str(caught.value)
    assert "$MLBRIDGE_ENGINE (not set)" in message
    assert str(PACKAGED_ENGINE) in message
    assert "`mlbridge` on PATH" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_found_on_path(engine_bin: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLBRIDGE_ENGINE", raising=False)
    (tmp_path / "mlbridge").symlink_to(engine_bin.resolve())
    monkeypatch.setenv("PATH", str(tmp_path))
    if PACKAGED_ENGINE.exists():
        pytest.skip("this mlbridge is an installed wheel with its engine")
    with Engine.start() as engine:
        assert engine.binary == tmp_path / "mlbridge"


def test_the_ready_line_is_read_without_a_copy_of_its_wording() -> None:
    assert _address_from_ready_line("anything at all on 127.0.0.1:5\n", "127.0.0.1:0") == "127.0.0.1:5"
    assert _address_from_ready_line("serving on unix:/tmp/a b/s.sock\n", "unix:/tmp/a b/s.sock") == "unix:/tmp/a b/s.sock"
    assert _address_from_ready_line("serving on unix:/elsewhere\n", "unix:/tmp/s.sock") is None
    assert _address_from_ready_line("127.0.0.1:5\n", "127.0.0.1:0") is None
    assert _address_from_ready_line("cut short on 127.0.0.1:5", "127.0.0.1:0") is None


def test_async_twin(engine_bin: Path) -> None:
    async def main() -> tuple[int, int | None, int | None]:
        async with await AsyncEngine.start(binary=engine_bin) as engine:
            async with AsyncSessionContext(engine.address) as ctx:
                await ctx.register_variable("x", "integer", 1)
                await ctx.set_variable("x", 5)
                assert await ctx.get_variable("x") == 5
            pid = engine.pid
        return pid, await engine.stop(), engine.engine.returncode

    pid, second_stop, code = asyncio.run(main())
    assert second_stop == 0 and code == 0
    assert not _alive(pid)


def test_async_start_fails_like_the_blocking_one(engine_bin: Path) -> None:
    with pytest.raises(EngineStartError, match="invalid value"):
        asyncio.run(AsyncEngine.start(binary=engine_bin, extra_args=["--history", "x"]))


def _python_with_an_engine(engine_bin: Path, tail: str) -> subprocess.Popen[str]:
    script = f"""
import mlbridge
engine = mlbridge.Engine.start(binary={str(engine_bin)!r})
print(engine.pid, flush=True)
{tail}
"""
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_no_orphan_when_python_is_killed(engine_bin: Path) -> None:
    parent = _python_with_an_engine(engine_bin, "import time; time.sleep(3600)")
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    assert _alive(pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    # The engine sees its stdin close and shuts down on its own.
    assert eventually(lambda: _alive(pid), lambda alive: not alive, timeout=30) is False


def test_atexit_stops_an_engine_left_running(engine_bin: Path) -> None:
    # The check runs in an atexit hook registered before mlbridge's, so after it: the engine
    # must already be gone then (stopped and reaped), not merely on its way out.
    script = f"""
import atexit, os

def check() -> None:
    try:
        os.kill(engine.pid, 0)
        print("alive", flush=True)
    except ProcessLookupError:
        print("gone", flush=True)

atexit.register(check)
import mlbridge
engine = mlbridge.Engine.start(binary={str(engine_bin)!r})
print(engine.pid, flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pid, verdict = done.stdout.split()
    assert verdict == "gone" and not _alive(int(pid))


def test_the_package_exports_the_engine() -> None:
    assert mlbridge.Engine is Engine and mlbridge.AsyncEngine is AsyncEngine
    assert {"Engine", "AsyncEngine", "EngineStartError", "EngineNotFoundError"} <= set(mlbridge.__all__)
