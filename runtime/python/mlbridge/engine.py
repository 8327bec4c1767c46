"""Launching a local engine from Python, so that a Python user needs no cargo.

``Engine.start()`` runs ``mlbridge serve`` as a child process, waits until it serves and
hands back its address::

    with mlbridge.Engine.start() as engine, mlbridge.SessionContext(engine.address) as ctx:
        ...

``AsyncEngine.start()`` is the asyncio twin. Starting and stopping a process is blocking
work by nature (there is no call to await but the process itself), so the twin is not
derived by unasync like `AsyncSessionContext`: it runs the same blocking steps on a thread,
never on the event loop.

The engine never outlives its Python process: ``stop()`` (SIGTERM, then SIGKILL to the
engine's whole process group after a grace period), the context managers and an `atexit`
hook stop it; and the engine is started with ``--stop-on-stdin-close`` on a pipe only this
process holds, so it also shuts down when Python is killed outright.

Finding the binary, in order: the ``binary=`` argument, the ``MLBRIDGE_ENGINE``
environment variable, the engine packaged inside the installed wheel
(``mlbridge/bin/mlbridge``, put there by ``cargo xtask wheel``), then ``mlbridge`` on
``PATH``.

The ready line: the engine prints exactly one line on stdout once it accepts connections,
ending with the address it listens on (the wording before it is the Rust constant
``ENGINE_READY_PREFIX``). This module does not copy that wording: the address is the line's
last word for TCP (an ``IP:PORT`` has no spaces) and, for a Unix socket, the very address
that was asked for, which the line must end with.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, cast

__all__ = [
    "AsyncEngine",
    "ENGINE_ENV",
    "Engine",
    "EngineNotFoundError",
    "EngineStartError",
    "PACKAGED_ENGINE",
    "find_engine",
]

ENGINE_ENV = "MLBRIDGE_ENGINE"
"""The environment variable naming the engine binary to run."""

_EXE = "mlbridge.exe" if sys.platform == "win32" else "mlbridge"

PACKAGED_ENGINE = Path(__file__).resolve().parent / "bin" / _EXE
"""Where a wheel built by ``cargo xtask wheel`` carries the engine binary."""

_STDERR_TAIL_BYTES = 64 * 1024
"""The engine's stderr kept in memory (its most recent bytes), for error messages."""

_READY_LINE_BYTES = 64 * 1024
"""The longest ready line read (a Unix socket path is at most about 100 bytes)."""

_UNIX_PATH_MAX = 100
"""Socket paths longer than this (sun_path is 104-108 bytes) fall back to TCP."""


class EngineStartError(RuntimeError):
    """The engine did not start. The message names the command, how it ended and the tail
    of what the engine wrote on stderr (also in `stderr_tail`)."""

    def __init__(self, message: str, stderr_tail: str = "") -> None:
        super().__init__(f"{message}\n--- engine stderr (tail) ---\n{stderr_tail}" if stderr_tail else message)
        self.stderr_tail = stderr_tail


class EngineNotFoundError(EngineStartError, FileNotFoundError):
    """No engine binary was found; `tried` lists every place that was looked at."""

    def __init__(self, tried: Sequence[str]) -> None:
        self.tried = list(tried)
        lines = "\n".join(f"  - {place}" for place in self.tried)
        super().__init__(
            "no mlbridge engine binary found; looked at, in order:\n"
            f"{lines}\n"
            "install a wheel built by `cargo xtask wheel`, pass binary=..., or set "
            f"{ENGINE_ENV} to the binary's path"
        )


def _resolve(candidate: str | os.PathLike[str]) -> Path | None:
    """`candidate` as an existing executable file: a path, or a bare name on PATH."""
    text = os.fspath(candidate)
    if not text:
        return None
    path = Path(text).expanduser()
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if os.sep not in text and (found := shutil.which(text)) is not None:
        return Path(found)
    return None


def find_engine(binary: str | os.PathLike[str] | None = None) -> Path:
    """The engine binary to run: `binary` if given, else ``$MLBRIDGE_ENGINE`` if set, else
    the one packaged in the wheel, else ``mlbridge`` on ``PATH``. A `binary` or
    ``$MLBRIDGE_ENGINE`` that names nothing runnable is an error, not skipped.

    Raises `EngineNotFoundError` naming what was tried.
    """
    if binary is not None:
        found = _resolve(binary)
        if found is None:
            raise EngineNotFoundError([f"binary={os.fspath(binary)!r} (not an executable file)"])
        return found
    tried: list[str] = []
    from_env = os.environ.get(ENGINE_ENV)
    if from_env:
        found = _resolve(from_env)
        if found is None:
            raise EngineNotFoundError([f"${ENGINE_ENV}={from_env!r} (not an executable file)"])
        return found
    tried.append(f"${ENGINE_ENV} (not set)")
    if PACKAGED_ENGINE.is_file() and os.access(PACKAGED_ENGINE, os.X_OK):
        return PACKAGED_ENGINE
    tried.append(f"{PACKAGED_ENGINE} (the engine packaged in the wheel; not there)")
    on_path = shutil.which(_EXE)
    if on_path is not None:
        return Path(on_path)
    tried.append(f"`{_EXE}` on PATH (not found)")
    raise EngineNotFoundError(tried)


class _StreamTail:
    """Reads a stream to its end on a daemon thread, keeping only its last bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, name="mlbridge-engine-stderr", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            while chunk := cast(io.BufferedReader, self._stream).read1(8192):
                with self._lock:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    while self._size - len(self._chunks[0]) >= self._limit:
                        self._size -= len(self._chunks.popleft())
        except (OSError, ValueError):
            pass

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)
        return data[-self._limit :].decode("utf-8", errors="replace")

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


def _drain(stream: IO[bytes]) -> None:
    """Reads and drops whatever else arrives on the engine's stdout (its workers may print),
    so that no writer ever blocks on a full pipe."""
    try:
        while cast(io.BufferedReader, stream).read1(8192):
            pass
    except (OSError, ValueError):
        pass


def _default_listen() -> tuple[str, Path | None]:
    """A Unix socket in a fresh private directory, or 127.0.0.1:0 where that cannot be."""
    if sys.platform == "win32":
        return "127.0.0.1:0", None
    directory = Path(tempfile.mkdtemp(prefix="mlbridge-engine-"))  # mode 0700
    socket_path = directory / "engine.sock"
    if len(os.fsencode(socket_path)) > _UNIX_PATH_MAX:
        directory.rmdir()
        return "127.0.0.1:0", None
    return f"unix:{socket_path}", directory


def _address_from_ready_line(line: str, listen: str) -> str | None:
    """The address a ready line announces (see the module docstring), or None when `line`
    is not a complete ready line."""
    if not line.endswith("\n"):
        return None
    line = line.rstrip("\r\n")
    if listen.startswith("unix:"):
        return listen if line.endswith(" " + listen) else None
    words = line.split()
    return words[-1] if len(words) > 1 else None


# Engines started and not yet stopped: an engine runs until `stop()` or the interpreter's
# exit, whether or not its `Engine` is still referenced.
_live: set[Engine] = set()
_live_lock = threading.Lock()


def _stop_all() -> None:
    """The `atexit` hook: stops every engine this process started and did not stop."""
    with _live_lock:
        engines = list(_live)
    for engine in engines:
        engine.stop()


atexit.register(_stop_all)


class Engine:
    """A local ``mlbridge serve`` process, started by `Engine.start`.

    `address` is what `SessionContext` takes; `pid` the engine's process id. `stop()`
    stops it (idempotent); so do leaving a ``with`` block, the interpreter's exit, and the
    death of this process (see the module docstring).
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        address: str,
        binary: Path,
        stderr: _StreamTail,
        private_dir: Path | None,
    ) -> None:
        self._process = process
        self._address = address
        self._binary = binary
        self._stderr = stderr
        self._private_dir = private_dir
        self._lock = threading.Lock()
        self._returncode: int | None = None
        self._stopped = False

    @classmethod
    def start(
        cls,
        *,
        listen: str | None = None,
        workers: int = 0,
        adapters: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> Engine:
        """Starts ``mlbridge serve`` and returns once it accepts connections.

        Args:
            listen: ``IP:PORT`` (port 0 picks a free one) or ``unix:PATH``. Default: a Unix
                socket in a new private temporary directory (``127.0.0.1:0`` where Unix
                sockets are not available).
            workers: Python workers for framework operations (0: none). They run this
                interpreter unless ``MLBRIDGE_PYTHON`` says otherwise.
            adapters: adapter modules every worker loads (``--adapter``); default: all
                the workers find.
            extra_args: more ``mlbridge serve`` flags, e.g. ``["--max-sessions", "10"]``.
            binary: the engine binary (see `find_engine` for the lookup without it).
            startup_timeout: seconds to wait for the engine to serve (workers importing
                large frameworks take a while) before it is killed and this fails.
            env: the engine's environment (default: this process's).

        Raises:
            EngineNotFoundError: no binary was found.
            EngineStartError: the engine exited or did not serve in time; the message
                carries its stderr tail.
        """
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, not {workers}")
        path = find_engine(binary)
        private_dir: Path | None = None
        if listen is None:
            listen, private_dir = _default_listen()
        command = [str(path), "serve", "--listen", listen, "--stop-on-stdin-close"]
        if workers:
            command += ["--workers", str(workers)]
        for adapter in adapters:
            command += ["--adapter", adapter]
        command += list(extra_args)
        environment = dict(os.environ if env is None else env)
        environment.setdefault("MLBRIDGE_PYTHON", sys.executable)
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=environment,
                # Its own process group: a Ctrl-C meant for Python does not hit the engine
                # half-way (Python stops it in order), and a kill reaches its workers too.
                start_new_session=sys.platform != "win32",
            )
        except OSError as err:
            _remove_dir(private_dir)
            raise EngineStartError(f"could not run {command}: {err}") from err
        assert process.stdout is not None and process.stderr is not None
        stderr = _StreamTail(process.stderr, _STDERR_TAIL_BYTES)
        ready: list[bytes] = []
        got_line = threading.Event()
        stdout = process.stdout

        def read_ready_line() -> None:
            try:
                ready.append(stdout.readline(_READY_LINE_BYTES))
            except (OSError, ValueError):
                ready.append(b"")
            got_line.set()
            _drain(stdout)

        threading.Thread(target=read_ready_line, name="mlbridge-engine-stdout", daemon=True).start()
        engine = cls(process, "", path, stderr, private_dir)
        with _live_lock:
            _live.add(engine)
        try:
            if not got_line.wait(startup_timeout):
                engine.stop(grace=0)
                raise EngineStartError(
                    f"{command} did not serve within {startup_timeout:g} s (killed)", stderr.text()
                )
            line = ready[0].decode("utf-8", errors="replace")
            address = _address_from_ready_line(line, listen)
            if address is None:
                code = engine.stop(grace=5.0)
                how = f"exited with status {code}" if not line else f"printed {line!r}, not its ready line"
                raise EngineStartError(f"{command} {how}", stderr.text())
        except BaseException:
            engine.stop(grace=0)
            raise
        engine._address = address
        return engine

    @property
    def address(self) -> str:
        """Where the engine listens: ``unix:PATH`` or ``IP:PORT``, for `SessionContext`."""
        return self._address

    @property
    def pid(self) -> int:
        """The engine's process id."""
        return self._process.pid

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The engine's process, for sending it signals or waiting on it directly (its
        stdin is the lifeline, its stdout and stderr are read by this object)."""
        return self._process

    @property
    def binary(self) -> Path:
        """The engine binary that runs."""
        return self._binary

    @property
    def running(self) -> bool:
        """Whether the engine process is still alive."""
        return self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The engine's exit status once it has stopped (negative: killed by that signal)."""
        return self._process.poll()

    def stderr_tail(self) -> str:
        """The last bytes (up to 64 KiB) the engine wrote on stderr."""
        return self._stderr.text()

    def stop(self, grace: float = 10.0) -> int | None:
        """Stops the engine: SIGTERM (it finishes the calls in flight and stops its
        workers), then, if it has not exited within `grace` seconds, SIGKILL to it and its
        process group. Returns its exit status. Calling it again does nothing more."""
        with self._lock:
            if self._stopped:
                return self._returncode
            self._stopped = True
            process = self._process
            if process.poll() is None:
                try:
                    if grace > 0:
                        process.terminate()
                        process.wait(grace)
                except subprocess.TimeoutExpired:
                    pass
                if process.poll() is None:
                    _kill_group(process)
                    process.wait()
            if process.stdin is not None:
                try:
                    process.stdin.close()
                except OSError:
                    pass
            self._stderr.join(1.0)
            _remove_dir(self._private_dir)
            self._returncode = process.returncode
        with _live_lock:
            _live.discard(self)
        return self._returncode

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"exited {self.returncode}"
        return f"Engine(address={self._address!r}, pid={self.pid}, {state})"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the (not yet reaped, so still owned) process group the engine leads, or
    to the engine alone where there are no process groups."""
    if sys.platform != "win32":
        try:
            os.killpg(process.pid, signal.SIGKILL)
            return
        except OSError:
            pass
    try:
        process.kill()
    except OSError:
        pass


def _remove_dir(directory: Path | None) -> None:
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


class AsyncEngine:
    """The asyncio twin of `Engine`: ``await AsyncEngine.start(...)``, ``await stop()``,
    ``async with``. The blocking steps run on a thread, never on the event loop."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        """The blocking `Engine` this wraps."""

    @classmethod
    async def start(
        cls,
        *,
        listen: str | None = None,
        workers: int = 0,
        adapters: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> AsyncEngine:
        """Starts the engine like `Engine.start` (same arguments and errors). If this is
        cancelled while the engine starts, the engine is stopped once it is up."""

        def start() -> Engine:
            return Engine.start(
                listen=listen,
                workers=workers,
                adapters=adapters,
                extra_args=extra_args,
                binary=binary,
                startup_timeout=startup_timeout,
                env=env,
            )

        starting = asyncio.ensure_future(asyncio.to_thread(start))
        try:
            return cls(await asyncio.shield(starting))
        except asyncio.CancelledError:
            starting.add_done_callback(_stop_when_started)
            raise

    @property
    def address(self) -> str:
        """Where the engine listens, for `AsyncSessionContext`."""
        return self.engine.address

    @property
    def pid(self) -> int:
        """The engine's process id."""
        return self.engine.pid

    @property
    def running(self) -> bool:
        """Whether the engine process is still alive."""
        return self.engine.running

    def stderr_tail(self) -> str:
        """The last bytes the engine wrote on stderr."""
        return self.engine.stderr_tail()

    async def stop(self, grace: float = 10.0) -> int | None:
        """`Engine.stop`, on a thread."""
        return await asyncio.to_thread(self.engine.stop, grace)

    async def __aenter__(self) -> AsyncEngine:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"Async{self.engine!r}"


def _stop_when_started(starting: asyncio.Future[Engine]) -> None:
    if starting.cancelled() or starting.exception() is not None:
        return
    threading.Thread(target=starting.result().stop, daemon=True).start()
