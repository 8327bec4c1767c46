"""Watch streams: `Watch` / `AsyncWatch` iterate a session's variable changes for users;
`CacheWatcher` / `AsyncCacheWatcher` keep a context's cache coherent in the background.

Stream shape (see `WatchVariablesRequest` in the proto): optional INITIAL updates or a
replay, one SYNCED marker, then live changes in sequence order. The SYNCED marker is not
yielded; it sets `Watch.synced` (and `Watch.synced_sequence`) instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from mlbridge_proto import ml_bridge_pb2 as pb

from .cache import VariableCache
from .errors import (
    BridgeError,
    InvalidArgument,
    SessionExpired,
    SessionLimitExceeded,
    SessionNotFound,
    Unavailable,
    WatchLagged,
    error_from_rpc,
)
from .snapshots import VariableUpdate

__all__ = ["AsyncWatch", "Watch"]

_SYNCED = pb.VARIABLE_UPDATE_KIND_SYNCED
_log = logging.getLogger("mlbridge.watch")


class _Position:
    """Where a watch stands, and the request that continues from there."""

    def __init__(
        self, session_id: str, names: Iterable[str] | str | None, include_initial: bool, from_version: int | None
    ) -> None:
        self.session_id = session_id
        self.names = [names] if isinstance(names, str) else list(names or ())
        self.include_initial = include_initial and from_version is None
        self.resume = from_version
        self.synced = False
        self.synced_sequence: int | None = None
        self.last_sequence = from_version or 0
        self.snapshot: list[pb.VariableUpdate] = []
        self.ready: deque[pb.VariableUpdate] = deque()

    def request(self) -> pb.WatchVariablesRequest:
        request = pb.WatchVariablesRequest(session_id=self.session_id, names=self.names)
        if self.synced or self.resume is not None:
            request.resume_from_sequence = self.last_sequence
        elif self.include_initial:
            request.include_initial_values = True
        return request

    def accept(self, update: pb.VariableUpdate) -> None:
        """Records `update` and queues it for handing out if it is a variable update.

        INITIAL updates are held back until the SYNCED marker, so a snapshot is handed out
        whole or (if the stream drops in between) not at all and requested again.
        """
        self.last_sequence = max(self.last_sequence, update.sequence)
        if update.kind == _SYNCED:
            self.synced = True
            self.synced_sequence = update.sequence
            self.ready.extend(self.snapshot)
            self.snapshot.clear()
        elif update.kind == pb.VARIABLE_UPDATE_KIND_INITIAL and not self.synced:
            self.snapshot.append(update)
        else:
            self.ready.append(update)

    def dropped(self) -> None:
        """The stream broke: an incomplete snapshot is requested again."""
        self.snapshot.clear()


class _Reconnect:
    """Retry budget for a dropped stream: `window` seconds since the last message."""

    def __init__(self, enabled: bool, window: float = 10.0) -> None:
        self.enabled = enabled
        self.window = window
        self.last_ok = time.monotonic()
        self.delay = 0.05

    def progress(self) -> None:
        self.last_ok = time.monotonic()
        self.delay = 0.05

    def next_delay(self, error: BridgeError) -> float | None:
        if not self.enabled or not isinstance(error, Unavailable):
            return None
        if time.monotonic() - self.last_ok > self.window:
            return None
        delay = self.delay
        self.delay = min(self.delay * 2, 1.0)
        return delay


class Watch(Iterator[VariableUpdate]):
    """An iterator of `VariableUpdate`s of one session (from `SessionContext.watch`).

    The stream stays open until `close()` (or leaving a `with` block) or until its session
    context closes; iteration ends then.
    After a dropped connection (UNAVAILABLE) it reconnects and resumes from
    `last_sequence` when `reconnect` is true, so no change is lost or repeated. INITIAL
    updates are handed out once the whole snapshot has arrived (at the SYNCED marker); a
    connection lost before that just asks for the snapshot again. Any other failure (e.g.
    `SessionNotFound`, `WatchLagged`) is raised from `next()`.

    Attributes:
        synced: whether the SYNCED marker has arrived (the stream is live).
        synced_sequence: the sequence the SYNCED marker carried.
        last_sequence: the highest sequence received; pass it as `from_version` to resume.
    """

    def __init__(
        self,
        open_stream: Callable[[pb.WatchVariablesRequest], Any],
        session_id: str,
        names: Iterable[str] | str | None,
        include_initial: bool,
        from_version: int | None,
        *,
        reconnect: bool = True,
        numpy: bool = False,
        context_open: Callable[[], bool] = lambda: True,
    ) -> None:
        self._open_stream = open_stream
        self._position = _Position(session_id, names, include_initial, from_version)
        self._reconnect = _Reconnect(reconnect)
        self._numpy = numpy
        self._context_open = context_open
        self._call: Any = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def synced(self) -> bool:
        """Whether the stream is live (the SYNCED marker has arrived)."""
        return self._position.synced

    @property
    def synced_sequence(self) -> int | None:
        """The sequence of the SYNCED marker, once it has arrived."""
        return self._position.synced_sequence

    @property
    def last_sequence(self) -> int:
        """The highest sequence received (the resume point)."""
        return self._position.last_sequence

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> VariableUpdate:
        while True:
            if self._position.ready:
                return VariableUpdate.from_proto(self._position.ready.popleft(), numpy=self._numpy)
            call = self._current()
            try:
                update = next(call)
            except StopIteration:
                self.close()
                raise
            except grpc.RpcError as raw:
                if self._closed or not self._context_open():
                    self.close()
                    raise StopIteration from None
                error = error_from_rpc(raw)
                delay = self._reconnect.next_delay(error)
                if delay is None:
                    self.close()
                    raise error from None
                self._call = None
                self._position.dropped()
                time.sleep(delay)
                continue
            self._reconnect.progress()
            self._position.accept(update)

    def _current(self) -> Any:
        with self._lock:
            if self._closed:
                raise StopIteration
            if self._call is None:
                self._call = self._open_stream(self._position.request())
            return self._call

    def close(self) -> None:
        """Cancels the stream; iteration ends."""
        with self._lock:
            self._closed = True
            call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class AsyncWatch(AsyncIterator[VariableUpdate]):
    """The asyncio twin of `Watch` (from `AsyncSessionContext.watch`): ``async for``."""

    def __init__(
        self,
        open_stream: Callable[[pb.WatchVariablesRequest], Any],
        session_id: str,
        names: Iterable[str] | str | None,
        include_initial: bool,
        from_version: int | None,
        *,
        reconnect: bool = True,
        numpy: bool = False,
        context_open: Callable[[], bool] = lambda: True,
    ) -> None:
        self._open_stream = open_stream
        self._position = _Position(session_id, names, include_initial, from_version)
        self._reconnect = _Reconnect(reconnect)
        self._numpy = numpy
        self._context_open = context_open
        self._call: Any = None
        self._closed = False

    @property
    def synced(self) -> bool:
        """Whether the stream is live (the SYNCED marker has arrived)."""
        return self._position.synced

    @property
    def synced_sequence(self) -> int | None:
        """The sequence of the SYNCED marker, once it has arrived."""
        return self._position.synced_sequence

    @property
    def last_sequence(self) -> int:
        """The highest sequence received (the resume point)."""
        return self._position.last_sequence

    def __aiter__(self) -> AsyncWatch:
        return self

    async def __anext__(self) -> VariableUpdate:
        while True:
            if self._position.ready and not self._closed:
                return VariableUpdate.from_proto(self._position.ready.popleft(), numpy=self._numpy)
            if self._closed:
                raise StopAsyncIteration
            if self._call is None:
                self._call = self._open_stream(self._position.request())
            call = self._call
            try:
                update = await call.read()
            except asyncio.CancelledError:
                if self._closed:
                    raise StopAsyncIteration from None
                raise
            except grpc.RpcError as raw:
                if self._closed or not self._context_open():
                    self.close()
                    raise StopAsyncIteration from None
                error = error_from_rpc(raw)
                delay = self._reconnect.next_delay(error)
                if delay is None:
                    self.close()
                    raise error from None
                self._call = None
                self._position.dropped()
                await asyncio.sleep(delay)
                continue
            if update is grpc.aio.EOF:
                self.close()
                raise StopAsyncIteration
            self._reconnect.progress()
            self._position.accept(update)

    def close(self) -> None:
        """Cancels the stream; iteration ends."""
        self._closed = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    async def aclose(self) -> None:
        """Cancels the stream (async-generator style)."""
        self.close()

    async def __aenter__(self) -> AsyncWatch:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


def _fatal(error: BridgeError) -> bool:
    """Whether the background watch should stop for good: the session is gone, or the engine
    refuses another watcher (retrying would only hold a slot other clients need)."""
    return isinstance(error, (SessionNotFound, SessionExpired, SessionLimitExceeded))


def _restart(error: BridgeError) -> bool:
    """Whether resuming is impossible and the cache must start over."""
    return isinstance(error, (WatchLagged, InvalidArgument))


class _CacheFeed:
    """Applies one background watch stream to a cache and knows where to resume."""

    def __init__(self, session_id: str, cache: VariableCache, start_sequence: int | None) -> None:
        self.session_id = session_id
        self.cache = cache
        self.resume = start_sequence
        self.delay = 0.05
        self._replaying = False

    def request(self) -> pb.WatchVariablesRequest:
        request = pb.WatchVariablesRequest(session_id=self.session_id)
        if self.resume is not None:
            request.resume_from_sequence = self.resume
        self._replaying = self.resume is not None
        return request

    def apply(self, update: pb.VariableUpdate) -> None:
        if update.kind == _SYNCED:
            self.cache.synced(update.sequence, replayed=self._replaying)
            self.delay = 0.05
        else:
            self.cache.apply(update)
        self.resume = max(self.resume or 0, update.sequence)

    def failed(self, error: BridgeError | None) -> float | None:
        """Handles the end of a stream; the delay before the next attempt, or None to stop."""
        self.cache.watch_lost()
        if error is not None and _fatal(error):
            if isinstance(error, SessionLimitExceeded):
                _log.warning("the variable cache stops watching, reads go to the engine: %s", error.message)
            return None
        if error is not None and _restart(error):
            self.cache.clear()
            self.resume = None
        delay = self.delay
        self.delay = min(self.delay * 2, 2.0)
        return delay


class CacheWatcher:
    """A daemon thread that watches every variable of a session and feeds a cache."""

    def __init__(
        self,
        open_stream: Callable[[pb.WatchVariablesRequest], Any],
        session_id: str,
        cache: VariableCache,
        start_sequence: int | None,
    ) -> None:
        self._open_stream = open_stream
        self._feed = _CacheFeed(session_id, cache, start_sequence)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._thread = threading.Thread(target=self._run, name=f"mlbridge-watch-{session_id}", daemon=True)

    def start(self) -> None:
        """Starts watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stops watching and waits for the thread to end."""
        self._stop.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            error: BridgeError | None = None
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self._call = self._open_stream(self._feed.request())
                for update in self._call:
                    self._feed.apply(update)
            except grpc.RpcError as raw:
                if self._stop.is_set():
                    return
                error = error_from_rpc(raw)
            delay = self._feed.failed(error)
            if delay is None:
                return
            self._stop.wait(delay)


class AsyncCacheWatcher:
    """An asyncio task that watches every variable of a session and feeds a cache."""

    def __init__(
        self,
        open_stream: Callable[[pb.WatchVariablesRequest], Any],
        session_id: str,
        cache: VariableCache,
        start_sequence: int | None,
    ) -> None:
        self._open_stream = open_stream
        self._feed = _CacheFeed(session_id, cache, start_sequence)
        self._task: asyncio.Task[None] | None = None
        self._call: Any = None
        self._stopping = False

    def start(self) -> None:
        """Starts watching (needs a running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlbridge-cache-watch")

    async def stop(self) -> None:
        """Stops watching and waits for the task to end."""
        self._stopping = True
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while not self._stopping:
            error: BridgeError | None = None
            try:
                self._call = self._open_stream(self._feed.request())
                async for update in self._call:
                    self._feed.apply(update)
            except grpc.RpcError as raw:
                if self._stopping:
                    return
                error = error_from_rpc(raw)
            delay = self._feed.failed(error)
            if delay is None:
                return
            await asyncio.sleep(delay)
