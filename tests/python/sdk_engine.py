"""Fixtures and helpers for the Python SDK tests (`test_sdk_*.py`): real engine processes,
fresh sessions, and a TCP proxy that can drop connections on demand.

Test modules import the fixtures they use by name, e.g.
``from sdk_engine import address, ctx  # noqa: F401``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mlbridge import Engine, EngineStartError, SessionContext

T = TypeVar("T")


@dataclass
class RunningEngine:
    """An `mlbridge serve` process and the address it listens on."""

    process: subprocess.Popen[Any]
    address: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_engine(
    engine_bin: Path, *flags: str, listen: str = "127.0.0.1:0", env: dict[str, str] | None = None
) -> RunningEngine:
    """Starts `mlbridge serve --listen LISTEN FLAGS...` with `mlbridge.Engine.start` and waits
    for its ready line (with ``--workers N``, the engine prints it once every worker is
    ready). With ``MLBRIDGE_TEST_STATE`` set (e.g. ``redis://127.0.0.1:6390``), every engine
    keeps its state there (``--state``), so a suite runs unchanged on another backend. With
    ``MLBRIDGE_TEST_AUTH=required`` the engine checks tokens (``--auth required``), so that
    the suite runs as a client of a secured engine would."""
    state = os.environ.get("MLBRIDGE_TEST_STATE")
    if state:
        flags = ("--state", state, *flags)
    if os.environ.get("MLBRIDGE_TEST_AUTH") == "required" and "--auth" not in flags:
        flags = (*flags, "--auth", "required")
    try:
        started = Engine.start(binary=engine_bin, listen=listen, extra_args=flags, env=env)
    except EngineStartError as failed:
        pytest.fail(f"engine with {flags} did not start: {failed}")
    return RunningEngine(started.process, started.address)


@pytest.fixture(scope="module")
def engine(engine_bin: Path) -> Iterator[RunningEngine]:
    """One engine per test module (tests stay independent by using fresh sessions)."""
    running = start_engine(engine_bin)
    yield running
    running.stop()


def worker_env(**extra: str) -> dict[str, str]:
    """The environment for an engine with workers: this interpreter runs them."""
    return {**os.environ, "MLBRIDGE_PYTHON": sys.executable, **extra}


@pytest.fixture(scope="module")
def pool(engine_bin: Path) -> Iterator[RunningEngine]:
    """One engine with two Python workers per test module."""
    running = start_engine(engine_bin, "--workers", "2", env=worker_env())
    yield running
    running.stop()


@pytest.fixture
def address(engine: RunningEngine) -> str:
    """The module engine's address."""
    return engine.address


@pytest.fixture
def engines(engine_bin: Path) -> Iterator[Callable[..., RunningEngine]]:
    """Starts extra engines with flags (e.g. ``engines("--max-value-bytes", "1024")``);
    all are stopped after the test."""
    started: list[RunningEngine] = []

    def start(*flags: str, listen: str = "127.0.0.1:0") -> RunningEngine:
        running = start_engine(engine_bin, *flags, listen=listen)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def ctx(address: str) -> Iterator[SessionContext]:
    """A fresh session on the module engine, cleaned up after the test."""
    with SessionContext(address) as context:
        yield context


@pytest.fixture
def raw(ctx: SessionContext, address: str) -> Iterator[SessionContext]:
    """A second client on the same session as `ctx` that sends everything unchecked, so the
    engine's own checks answer."""
    with SessionContext(address, ctx.session_id, validate=False, cache=False, token=ctx.token) as context:
        yield context


def unique(prefix: str = "sdk") -> str:
    """A session id no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def eventually(probe: Callable[[], T], accept: Callable[[T], bool], timeout: float = 5.0) -> T:
    """Polls `probe` until `accept` holds for its result (or the timeout passes), and returns
    the last result. Timeouts here are generous bounds, never performance assertions."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if accept(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.01)


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a TCP engine; `drop()` cuts every open connection (the
    client sees a dropped connection and reconnects through the proxy)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._server.getsockname()[1]}"
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> None:
        """Resets every open connection."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._server.close()
        self.drop()


@pytest.fixture
def proxy(engine: RunningEngine) -> Iterator[TcpProxy]:
    """A droppable TCP proxy in front of the module engine."""
    running = TcpProxy(engine.address)
    yield running
    running.close()
