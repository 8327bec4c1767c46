"""The callback server: Python functions a session registers with the engine
(``ctx.register_callback(fn)``), served to the engine through the `Callback` service.

The first registration of a context starts a grpcio server in background threads on
``127.0.0.1:0``; closing the context stops it. Each call runs the function with the decoded
arguments. A function that raises answers CALLBACK_ERROR with its exception type and
traceback. When the engine gives up on a call (its deadline passed), the call is cancelled:
`current_call()` inside the function gives the `CallbackCall`, whose ``cancelled`` event is
then set (an ``async def`` callback run on the context's loop is cancelled outright).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc

from .auth import RequireSecret, new_secret
from . import telemetry
from .dispatch import _remote
from .errors import BridgeError, CallbackError, CallbackNotFound, clip, send_error
from .tools import specs_from_signature
from .value_types import VariableType
from .values import from_value, to_value

__all__ = ["CallbackCall", "CallbackServer", "Registered", "current_call"]

_log = logging.getLogger(__name__)
_local = threading.local()


@dataclass
class CallbackCall:
    """One running call of a callback, as the function sees it through `current_call()`."""

    name: str
    session_id: str
    caller: str
    metadata: dict[str, str]
    deadline: float | None = None
    """Seconds the engine allowed the call when it started, if it said."""
    cancelled: threading.Event = field(default_factory=threading.Event)
    """Set when the engine cancels the call (its deadline passed or it gave up), and when
    the call ends."""


def current_call() -> CallbackCall | None:
    """The callback call running in this thread (None outside a callback)."""
    call: CallbackCall | None = getattr(_local, "call", None)
    return call


@dataclass
class Registered:
    """A function registered as a callback, with the specs sent to the engine."""

    name: str
    fn: Callable[..., Any]
    parameters: list[pb.ParameterSpec]
    returns: VariableType
    description: str
    loop: asyncio.AbstractEventLoop | None = None
    numpy: bool = False
    callback_id: str = ""

    @classmethod
    def of(
        cls, fn: Callable[..., Any], name: str | None, loop: asyncio.AbstractEventLoop | None, numpy: bool
    ) -> Registered:
        parameters, returns, description = specs_from_signature(fn)
        return cls(name or fn.__name__, fn, parameters, returns, description, loop, numpy)

    def request(
        self, session_id: str, endpoint: str, timeout: float | None, replace: bool, endpoint_secret: str = ""
    ) -> pb.RegisterCallbackRequest:
        request = pb.RegisterCallbackRequest(
            session_id=session_id,
            name=self.name,
            endpoint=endpoint,
            description=self.description,
            parameters=self.parameters,
            return_type=self.returns.to_proto(),
            replace=replace,
            endpoint_secret=endpoint_secret,
        )
        if timeout is not None:
            request.timeout.FromNanoseconds(int(timeout * 1_000_000_000))
        return request


class _Service(pb_grpc.CallbackServicer):
    def __init__(self, server: CallbackServer) -> None:
        self._server = server

    def ExecuteCallback(self, request: pb.ExecuteCallbackRequest, context: grpc.ServicerContext) -> pb.ExecuteCallbackResponse:
        call = CallbackCall(
            request.callback_name, request.session_id, request.caller, dict(request.metadata), context.time_remaining()
        )
        context.add_callback(call.cancelled.set)
        try:
            registered = self._server.get(request.callback_name)
            arguments = {name: from_value(value, numpy=registered.numpy) for name, value in request.arguments.items()}
            result = self._run(registered, arguments, call)
            response = pb.ExecuteCallbackResponse(metadata=call.metadata)
            if result is not None:
                hint = registered.returns if registered.returns is not VariableType.ANY else None
                response.result.CopyFrom(to_value(result, hint))
            return response
        except BaseException as error:  # noqa: BLE001 - every failure is answered as data
            bridge = error if isinstance(error, BridgeError) else _remote(CallbackError, error, f"callback {request.callback_name}")
            if not bridge.origin:
                bridge.origin = f"callback:{request.callback_name}"
            bridge.context.setdefault("callback", request.callback_name)
            send_error(context, bridge)
            return pb.ExecuteCallbackResponse()

    @staticmethod
    def _run(registered: Registered, arguments: Mapping[str, Any], call: CallbackCall) -> Any:
        if inspect.iscoroutinefunction(registered.fn):
            if registered.loop is not None and registered.loop.is_running():
                future = asyncio.run_coroutine_threadsafe(registered.fn(**arguments), registered.loop)
                # Cancelling the call cancels the coroutine on its loop.
                watcher = threading.Thread(target=_cancel_on, args=(call, future), daemon=True)
                watcher.start()
                try:
                    return future.result()
                finally:
                    call.cancelled.set()  # ends the watcher
            return asyncio.run(registered.fn(**arguments))
        _local.call = call
        try:
            return registered.fn(**arguments)
        finally:
            _local.call = None


def _cancel_on(call: CallbackCall, future: Any) -> None:
    call.cancelled.wait()
    future.cancel()


class CallbackServer:
    """A `Callback` gRPC server in background threads, serving the registered functions."""

    def __init__(self, host: str = "127.0.0.1", max_workers: int = 16) -> None:
        self._callbacks: dict[str, Registered] = {}
        self._lock = threading.Lock()
        self.secret = new_secret()
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="mlbridge-callback"),
            options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
            # The engine presents this secret (given in RegisterCallback) on every call.
            interceptors=[RequireSecret(self.secret, "callback server"), *telemetry.server_interceptors()],
        )
        pb_grpc.add_CallbackServicer_to_server(_Service(self), self._server)
        port = self._server.add_insecure_port(f"{host}:0")
        self.endpoint = f"{host}:{port}"
        """The address the engine dials (``host:port``)."""
        self._server.start()

    def add(self, registered: Registered) -> None:
        with self._lock:
            self._callbacks[registered.name] = registered

    def remove(self, name: str) -> None:
        with self._lock:
            self._callbacks.pop(name, None)

    def get(self, name: str) -> Registered:
        with self._lock:
            registered = self._callbacks.get(name)
        if registered is None:
            raise CallbackNotFound(f"no callback named {clip(name)!r} is served here", context={"callback": name})
        return registered

    def stop(self, grace: float | None = None) -> None:
        """Stops serving; calls still running are cancelled after `grace` seconds. Does
        not wait for them (an ``async def`` callback may need the caller's loop to end)."""
        self._server.stop(grace)
