"""An attached worker: ``python -m mlbridge.worker --connect ENGINE --token-file FILE``.

A worker started elsewhere (another machine, a container, a systemd unit) dials the engine
and keeps one stream open (``mlbridge.v1.WorkerHub/Attach``). Its first message says what
it serves; the engine answers with the id it gave the worker, then sends framework
operations, tool calls and health pings on the stream, each tagged with a call id, and the
worker answers each on the same stream. The calls run in a thread pool on the same
`WorkerService` a spawned worker serves over gRPC, so both kinds of worker behave alike.

When the stream ends (the engine stopped, let the worker go, or the network broke) the
worker exits with status 1: restarting it is the operator's job.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc

from . import telemetry
from .channel import TlsConfig, channel_options
from .errors import DETAILS_TRAILER

__all__ = ["AttachedWorker", "Detached"]

_log = logging.getLogger("mlbridge.worker")


# The `Worker` method each kind of call stands for (span names, as a spawned worker's).
_METHODS = {"operation": "ExecuteFrameworkOperation", "tool": "ExecuteTool", "streaming_tool": "ExecuteStreamingTool"}


class Detached(Exception):
    """The worker's stream to the engine ended; the message says how."""


class _CallContext:
    """What a `WorkerService` method sees of one call on the stream: the error it reports
    (as `send_error` sets it on a gRPC context) and whether the engine cancelled the call."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._trailing: tuple[tuple[str, Any], ...] = ()

    # -- the parts of grpc.ServicerContext that WorkerService uses --------------------------

    def set_trailing_metadata(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        self._trailing = tuple(metadata)

    def set_code(self, code: grpc.StatusCode) -> None:
        pass  # the serialized BridgeError carries its kind, which decides the code

    def set_details(self, details: str) -> None:
        pass  # and its message

    def is_active(self) -> bool:
        return not self.cancelled.is_set()

    # -- ours --------------------------------------------------------------------------------

    def error(self) -> pb.BridgeError | None:
        """The error the call ended with, if any."""
        for key, value in self._trailing:
            if key == DETAILS_TRAILER:
                return pb.BridgeError.FromString(value)
        return None


class AttachedWorker:
    """Serves `service` (a `mlbridge.worker.WorkerService`) to the engine at `target` over
    one `WorkerHub.Attach` stream, presenting the engine's attach `token`."""

    def __init__(
        self,
        target: str,
        token: str,
        service: Any,
        *,
        name: str = "",
        threads: int = 64,
        tls: TlsConfig | None = None,
        engine_address: str | None = None,
    ) -> None:
        self.target = target
        # Where calls back into the engine go: `engine_address`, else the engine's own
        # word in each request (right for a worker the engine spawned on its host).
        self.engine_address = engine_address
        self.service = service
        self.name = name
        self._token = token
        options = channel_options(target, tls=tls)
        self._channel = (
            grpc.insecure_channel(target, options=options)
            if tls is None
            else grpc.secure_channel(target, tls.credentials(), options=options)
        )
        self._outbox: queue.Queue[pb.WorkerToEngine | None] = queue.Queue()
        self._calls: dict[int, _CallContext] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlbridge-attached")
        self._stream: Any = None
        self.worker_id = ""

    def _messages(self) -> Iterator[pb.WorkerToEngine]:
        while True:
            message = self._outbox.get()
            if message is None:
                return
            yield message

    def _send(self, call_id: int, **body: Any) -> None:
        self._outbox.put(pb.WorkerToEngine(call_id=call_id, **body))

    def run(self, on_attached: Callable[[str], None] | None = None) -> None:
        """Attaches and serves until the stream ends; raises `Detached` saying how, or
        `grpc.RpcError` when the engine refused the worker."""
        hello = pb.WorkerHello(name=self.name, description=self.service.Describe(pb.DescribeRequest(), _CallContext()))
        self._send(0, hello=hello)
        self._stream = pb_grpc.WorkerHubStub(self._channel).Attach(
            self._messages(), metadata=(("authorization", f"Bearer {self._token}"),)
        )
        stream = self._stream
        first = next(stream)
        if first.WhichOneof("body") != "welcome":
            raise Detached(f"the engine answered the hello with {first.WhichOneof('body')!r}, not a welcome")
        self.worker_id = first.welcome.worker_id
        self.service.worker_id = self.worker_id
        self.service.origin = f"worker:{self.worker_id}"
        if on_attached is not None:
            on_attached(self.worker_id)
        try:
            for message in stream:
                self._dispatch(message)
        except grpc.RpcError as error:
            code = error.code()
            raise Detached(f"{code.name if code else 'UNKNOWN'}: {error.details()}") from None
        raise Detached("the engine closed the stream")

    def stop(self) -> None:
        """Ends the stream (from any thread); `run` then returns by raising `Detached`."""
        if self._stream is not None:
            self._stream.cancel()
        self._outbox.put(None)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self, message: pb.EngineToWorker) -> None:
        kind = message.WhichOneof("body")
        call_id = message.call_id
        if kind == "ping":
            # Answered here, never behind busy threads: it says the worker is alive.
            self._send(call_id, pong=self.service.Ping(message.ping, _CallContext()))
        elif kind == "cancel":
            with self._lock:
                context = self._calls.pop(call_id, None)
            if context is not None:
                context.cancelled.set()
        elif kind in ("operation", "tool", "streaming_tool"):
            context = _CallContext()
            with self._lock:
                self._calls[call_id] = context
            self._executor.submit(self._run, call_id, kind, message, context)
        else:
            _log.warning("ignoring an engine message of kind %r", kind)

    def _run(self, call_id: int, kind: str, message: pb.EngineToWorker, context: _CallContext) -> None:
        if context.cancelled.is_set():
            # Cancelled while it waited for a thread: the engine has answered its caller.
            with self._lock:
                self._calls.pop(call_id, None)
            return
        method = f"/mlbridge.v1.Worker/{_METHODS[kind]}"
        with telemetry.server_span(method, message.trace_context):
            self._serve(call_id, kind, message, context)

    def _serve(self, call_id: int, kind: str, message: pb.EngineToWorker, context: _CallContext) -> None:
        try:
            if kind == "streaming_tool":
                self._stream_tool(call_id, message.streaming_tool, context)
                return
            if kind == "operation":
                if self.engine_address is not None:
                    message.operation.engine_address = self.engine_address
                response: Any = self.service.ExecuteFrameworkOperation(message.operation, context)
            else:
                if self.engine_address is not None:
                    message.tool.engine_address = self.engine_address
                response = self.service.ExecuteTool(message.tool, context)
            if context.cancelled.is_set():
                return
            error = context.error()
            if error is not None:
                self._send(call_id, error=error)
            else:
                self._send(call_id, **{kind: response})
        finally:
            with self._lock:
                self._calls.pop(call_id, None)

    def _stream_tool(
        self, call_id: int, request: pb.WorkerExecuteStreamingToolRequest, context: _CallContext
    ) -> None:
        if self.engine_address is not None:
            request.engine_address = self.engine_address
        chunks = self.service.ExecuteStreamingTool(request, context)
        try:
            for chunk in chunks:
                if context.cancelled.is_set():
                    return
                self._send(call_id, chunk=chunk)
        finally:
            chunks.close()  # runs the tool's cleanup when the engine cancelled the call
        error = context.error()
        if error is not None and not context.cancelled.is_set():
            self._send(call_id, error=error)
