"""`SessionContext`: a blocking client for one engine session.

```python
with SessionContext("127.0.0.1:50051") as ctx:
    ctx.register_variable("temperature", "float", 0.7, Constraints(min=0, max=2))
    ctx["temperature"] = 0.9          # one SetVariable; the engine checks it
    ctx.v.temperature                 # 0.9, from the cache while the watch keeps it fresh
    with ctx.batch() as batch:        # one atomic SetVariables on exit
        batch["temperature"] = 1.0
    ctx.tools.add(a=1.0, b=2.0)       # typed tool proxy
```

The methods in the ``@generated`` region are derived from `AsyncSessionContext` in
`aio.py` by `cargo xtask codegen` (unasync); edit them there.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc

from .session_protocol import DEFAULT_MAX_VALUE_BYTES, SessionCore, SessionOptions, not_open
from .auth import MintedToken, TokenInfo, scope_request
from .batch import Batch
from .cache import MISSING
from .callbacks import CallbackServer, Registered
from .channel import TlsConfig, channel
from .errors import BridgeError, ErrorKind, VariableNotFound, error_for, error_from_rpc
from .optimization import DEFAULT_LEASE, OptimizationLock
from .snapshots import HistoryEntry, OperationResult, Resource, SessionInfo, Variable, WriteResult, timestamp
from .tools import Tool, ToolNamespace, ToolSpec
from .value_types import Constraints, VariableType, constraints_from
from .values import to_value
from .watch import CacheWatcher, Watch

__all__ = ["SessionContext", "VariableNamespace"]

_Request = TypeVar("_Request")
_Function = TypeVar("_Function", bound=Callable[..., Any])
_Response = TypeVar("_Response")


class _MissingVariable(VariableNotFound, AttributeError):
    """`ctx.v.<name>` for a variable that does not exist (also an AttributeError)."""


class VariableNamespace:
    """``ctx.v``: variable values as attributes. ``ctx.v.x`` reads (cached),
    ``ctx.v.x = 1`` writes, ``del ctx.v.x`` deletes. Names that are not identifiers are
    reached with ``ctx["name"]``."""

    _context: SessionContext

    def __init__(self, context: SessionContext) -> None:
        object.__setattr__(self, "_context", context)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self._context.get_variable(name)
        except VariableNotFound as error:
            raise _MissingVariable(error.message, context=error.context, grpc_code=error.grpc_code) from None

    def __setattr__(self, name: str, value: object) -> None:
        self._context.set_variable(name, value)

    def __delattr__(self, name: str) -> None:
        self._context.delete_variable(name)

    def __dir__(self) -> list[str]:
        return [variable.name for variable in self._context.list_variables() if variable.name.isidentifier()]


class SessionContext:
    """A blocking client for one engine session; a context manager.

    Entering (or `open()`) initializes the session with InitializeSession; leaving (or
    `close()`) stops the background watch, cleans the session up with CleanupSession
    (see `keep_session`) and closes the channel.

    Args:
        address: the engine, ``"host:port"`` or ``"unix:/path/to.sock"``.
        session_id: join or create this session; None lets the engine choose an id.
        ttl: the session's inactivity timeout (seconds or timedelta); None: engine default.
        metadata: labels stored with a new session.
        keep_session: True never cleans the session up on exit, False always does; None
            (default) cleans it up only if this context created it.
        cache: serve reads from a local cache.
        cache_ttl: seconds a cached value may be served without a watch invalidation
            (default 5; None: until invalidated).
        watch_cache: keep the cache coherent with a background WatchVariables stream
            (a thread), so another client's write is seen within the watch latency. While
            that stream is not live, reads go to the engine. It starts with the first read, so a
            context that never reads keeps no watch open.
        validate: refuse a value over `max_value_bytes` before sending it
            (`PayloadTooLarge`). Every other check is the engine's; False sends
            everything as is.
        numpy: decode tensors as numpy arrays (None: when numpy is installed).
        source: recorded as the writer of every change (default ``python:pid-<pid>``).
        timeout: seconds per call (None: no deadline). Watch streams have none.
        max_value_bytes: the engine's value size limit, checked before sending.
        channel_options: extra grpc channel options.
        tls: connect over TLS (`TlsConfig`: the engine's CA, and a client certificate for
            an engine that requires one); None: plaintext. The SDK's callback server, which
            the engine dials back, stays plaintext on this host.
        token: the bearer token sent on every call, for an engine that checks them
            (``--auth required``): needed to join an existing session. A context that
            creates its session holds the owner token without one (``ctx.token``).
    """

    def __init__(
        self,
        address: str,
        session_id: str | None = None,
        *,
        ttl: float | timedelta | None = None,
        metadata: Mapping[str, str] | None = None,
        keep_session: bool | None = None,
        cache: bool = True,
        cache_ttl: float | timedelta | None = 5.0,
        watch_cache: bool = True,
        validate: bool = True,
        numpy: bool | None = None,
        source: str | None = None,
        timeout: float | None = 30.0,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
        tls: TlsConfig | None = None,
        token: str | None = None,
    ) -> None:
        options = SessionOptions.build(
            address,
            session_id,
            ttl=ttl,
            metadata=metadata,
            keep_session=keep_session,
            cache=cache,
            cache_ttl=cache_ttl,
            watch_cache=watch_cache,
            validate=validate,
            numpy=numpy,
            source=source,
            timeout=timeout,
            max_value_bytes=max_value_bytes,
            channel_options=channel_options,
            tls=tls,
            token=token,
        )
        self._core = SessionCore(options)
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.MLBridgeStub | None = None
        # Server streams (watch, streaming tools) get a connection of their own: pushed
        # messages then never delay the responses of calls (see channel.py).
        self._stream_channel: grpc.Channel | None = None
        self._stream_stub: pb_grpc.MLBridgeStub | None = None
        self._watcher: CacheWatcher | None = None
        # Where the background watch will resume from, until the first cached read starts it.
        self._watch_from: int | None = None
        self._watch_lock = threading.Lock()
        self._callbacks: CallbackServer | None = None
        self.tools = ToolNamespace(self._load_tools)
        """The tools visible to the session, as typed proxies: ``ctx.tools.add(a=1, b=2)``."""
        self.v = VariableNamespace(self)
        """Variable values as attributes: ``ctx.v.temperature``."""

    # -- lifecycle --------------------------------------------------------------------------

    def open(self) -> SessionContext:
        """Connects and initializes the session (idempotent)."""
        if self._stub is not None:
            return self
        options = self._core.options
        self._channel = channel(options.address, options.channel_options, options.tls, self._core.bearer)
        self._stub = pb_grpc.MLBridgeStub(self._channel)
        self._stream_channel = channel(options.address, options.channel_options, options.tls, self._core.bearer)
        self._stream_stub = pb_grpc.MLBridgeStub(self._stream_channel)
        try:
            response = self._invoke(self._stub.InitializeSession, self._core.initialize_request())
        except BaseException:
            self._close_channel()
            raise
        self._core.opened(response)
        self._watch_from = response.session.current_sequence if options.watch_cache else None
        return self

    def _start_watch(self) -> None:
        """Starts the background watch that keeps the cache coherent, on the first read that
        could be served from the cache: a context that never reads (say, one that drives an
        optimizer while its variables change every millisecond) pays for no watch. It
        resumes from the session's sequence at open, so no change since then is missed."""
        with self._watch_lock:
            if self._watch_from is None or self._stream_stub is None:
                return
            self._watcher = CacheWatcher(
                self._stream_stub.WatchVariables, self.session_id, self._core.cache, self._watch_from
            )
            self._watch_from = None
            self._watcher.start()

    # -- calls ------------------------------------------------------------------------------

    def _open_stub(self) -> pb_grpc.MLBridgeStub:
        if self._stub is None:
            raise not_open()
        return self._stub

    def _open_stream_stub(self) -> pb_grpc.MLBridgeStub:
        if self._stream_stub is None:
            raise not_open()
        return self._stream_stub

    def _invoke(self, method: grpc.UnaryUnaryMultiCallable[_Request, _Response], request: _Request) -> _Response:
        try:
            return method(request, timeout=self._core.options.timeout)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None

    def _callback_loop(self) -> asyncio.AbstractEventLoop | None:
        # A blocking context has no loop: `async def` callbacks run with `asyncio.run`.
        return None

    # -- variables --------------------------------------------------------------------------

    def batch(self, *, metadata: Mapping[str, str] | None = None) -> Batch:
        """A context manager that collects writes and sends them as one atomic SetVariables
        when the block ends (nothing is sent if the block raises)::

            with ctx.batch() as batch:
                batch["a"] = 1
                batch.set("b", 2, expected_version=3)
        """
        return Batch(
            lambda values, versions: self.set_variables(values, True, expected_versions=versions, metadata=metadata)
        )

    def __getitem__(self, name: str) -> Any:
        return self.get_variable(name)

    def __setitem__(self, name: str, value: object) -> None:
        self.set_variable(name, value)

    def __delitem__(self, name: str) -> None:
        self.delete_variable(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self._read(name)
        except VariableNotFound:
            return False
        return True

    # -- watch ------------------------------------------------------------------------------

    # -- callbacks --------------------------------------------------------------------------

    def callback(
        self, name: str | None = None, *, timeout: float | None = None, replace: bool = False
    ) -> Callable[[_Function], _Function]:
        """`register_callback` as a decorator with arguments::

            @ctx.callback("score", timeout=2.0)
            def metric(prediction: str) -> float: ...

        (``@ctx.register_callback`` registers under the function's own name.)
        """

        def register(fn: _Function) -> _Function:
            self.register_callback(fn, name, timeout=timeout, replace=replace)
            return fn

        return register

    # -- tools ------------------------------------------------------------------------------

    def _chunks(self, stub: pb_grpc.MLBridgeStub, request: pb.ExecuteStreamingToolRequest) -> Iterator[Any]:
        call = stub.ExecuteStreamingTool(request)
        try:
            for chunk in call:
                if chunk.HasField("data"):
                    yield self._core.decode(chunk.data)
                if chunk.is_final:
                    return
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        finally:
            call.cancel()
        raise error_for(
            ErrorKind.UNAVAILABLE,
            f"the stream of tool `{request.tool_name}` ended without a final chunk",
            tool=request.tool_name,
        )

    # @generated by `cargo xtask codegen` from `runtime/python/mlbridge/aio.py` (unasync of AsyncSessionContext); do not edit
    @property
    def session_id(self) -> str:
        """The session's id (known once open)."""
        return self._core.session_id

    @property
    def session(self) -> SessionInfo:
        """The session as InitializeSession returned it."""
        if self._core.info is None:
            raise not_open()
        return self._core.info

    @property
    def created(self) -> bool:
        """Whether this context created the session (rather than joining it)."""
        return self._core.created

    @property
    def is_open(self) -> bool:
        """Whether the context is open."""
        return self._stub is not None

    @property
    def cache_live(self) -> bool:
        """Whether the background watch currently keeps the cache coherent (it starts with the
        first read)."""
        return self._core.cache.live

    def close(self, *, cleanup: bool | None = None) -> None:
        """Stops the background watch, cleans the session up (`cleanup`, default: per
        `keep_session`) and closes the channel. Idempotent."""
        if self._stub is None:
            return
        try:
            self._watch_from = None
            if self._watcher is not None:
                self._watcher.stop()
                self._watcher = None
            if cleanup if cleanup is not None else self._core.should_cleanup():
                self._invoke(self._stub.CleanupSession, pb.CleanupSessionRequest(session_id=self.session_id))
        finally:
            self._stop_callbacks()
            self._close_channel()

    def _close_channel(self) -> None:
        channels = (self._channel, self._stream_channel)
        # Marked closed first, so that watches cancelled by the close end quietly.
        self._channel = self._stream_channel = None
        self._stub = self._stream_stub = None
        for opened in channels:
            if opened is not None:
                opened.close()

    def __enter__(self) -> SessionContext:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self.close()
        except BridgeError:
            # The block's own exception matters more than a failed cleanup.
            if error is None:
                raise

    def get_session(self) -> SessionInfo:
        """The session's current state (GetSession; counts as activity)."""
        response = self._invoke(
            self._open_stub().GetSession, pb.GetSessionRequest(session_id=self.session_id)
        )
        return SessionInfo.from_proto(response.session)

    def heartbeat(self) -> datetime:
        """Keeps the session alive; returns its new expiry."""
        response = self._invoke(self._open_stub().Heartbeat, pb.HeartbeatRequest(session_id=self.session_id))
        return timestamp(response.expires_at)

    def register_variable(
        self,
        name: str,
        type: VariableType | str,
        value: object,
        constraints: Constraints | Mapping[str, Any] | None = None,
        *,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        depends_on: Iterable[str] = (),
        **rules: Any,
    ) -> Variable:
        """Registers a new variable at version 1 and returns it.

        `constraints` is a `Constraints`, a plain dict of its fields or None; keyword
        arguments add rules (``register_variable("t", "float", 0.7, min=0.0, max=2.0)``).
        `depends_on` names existing variables it depends on: they cannot be deleted while it
        exists (see `register_derived` for a value computed from them).

        Raises `VariableAlreadyExists`, `TypeMismatch`, `ConstraintViolation`,
        `InvalidArgument` (bad name or constraints, a dependency cycle), `PayloadTooLarge`,
        `VariableNotFound` (a dependency).
        """
        request = self._core.register_request(
            name, type, value, constraints_from(constraints, rules), description, metadata, depends_on
        )
        response = self._invoke(self._open_stub().RegisterVariable, request)
        self._core.cache.store(response.variable, response.sequence)
        return self._core.variable(response.variable)

    def register_derived(
        self,
        name: str,
        type: VariableType | str,
        derived_by: str,
        depends_on: Iterable[str],
        constraints: Constraints | Mapping[str, Any] | None = None,
        *,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
        **rules: Any,
    ) -> Variable:
        """Registers a derived variable: the engine's host tool `derived_by` computes its
        value from the variables `depends_on` (one argument per variable, by name), now and
        in the same atomic step as every change of one of them, so a reader never sees it
        disagree with its inputs. It cannot be written; watchers see its changes.

        Raises `VariableNotFound` (an input), `ToolNotFound`, `InvalidArgument` (a cycle),
        the tool's errors (`ToolError`), `TypeMismatch` / `ConstraintViolation` (its value).
        """
        request = self._core.register_request(
            name, type, None, constraints_from(constraints, rules), description, metadata, depends_on, derived_by
        )
        response = self._invoke(self._open_stub().RegisterVariable, request)
        self._core.cache.store(response.variable, response.sequence)
        return self._core.variable(response.variable)

    def _fetch(self, name: str) -> pb.Variable:
        response = self._invoke(
            self._open_stub().GetVariable, pb.GetVariableRequest(session_id=self.session_id, name=name)
        )
        self._core.cache.store(response.variable, response.snapshot_sequence)
        return response.variable

    def _read(self, name: str) -> pb.Variable:
        if self._watch_from is not None:
            self._start_watch()
        cached = self._core.cache.lookup(name)
        return cached if cached is not None else self._fetch(name)

    def get_variable(self, name: str) -> Any:
        """The variable's current value (from the cache when fresh). Raises `VariableNotFound`."""
        if self._watch_from is not None:
            self._start_watch()
        plain = self._core.cache.plain_value(name)
        if plain is not MISSING:
            return plain
        return self._core.decode((self._read(name)).value)

    def describe_variable(self, name: str) -> Variable:
        """The variable's full state: type, constraints, value, version, ..."""
        return self._core.variable(self._read(name))

    def _converted(self, name: str, value: object) -> pb.Value:
        """`value` as a wire value, with the cached schema (if any) as a conversion hint;
        never a read: the engine checks the write."""
        return self._core.converted(name, self._core.cache.schema(name), value)

    def set_variable(
        self,
        name: str,
        value: object,
        expected_version: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> Variable:
        """Writes a variable and returns it at its new version.

        With `expected_version`, the write only succeeds if the variable is at that version
        (else `VersionConflict`). Raises `VariableNotFound`, `TypeMismatch`,
        `ConstraintViolation`, `PayloadTooLarge`.
        """
        request = self._core.set_request(name, self._converted(name, value), expected_version, metadata)
        response = self._invoke(self._open_stub().SetVariable, request)
        self._core.cache.store(response.variable, response.sequence)
        return self._core.variable(response.variable)

    def delete_variable(self, name: str, expected_version: int | None = None) -> Variable:
        """Deletes a variable and its history; returns its last state."""
        response = self._invoke(
            self._open_stub().DeleteVariable, self._core.delete_request(name, expected_version)
        )
        self._core.cache.forget(name, response.sequence)
        return self._core.variable(response.variable)

    def list_variables(self, pattern: str = "*") -> list[Variable]:
        """The variables whose names match a glob (`*`, `?`, `[a-z]`, `[!a-z]`), by name."""
        response = self._invoke(self._open_stub().ListVariables, self._core.list_request(pattern))
        for variable in response.variables:
            self._core.cache.store(variable, response.snapshot_sequence)
        return [self._core.variable(variable) for variable in response.variables]

    def get_variables(self, names: Iterable[str]) -> dict[str, Any]:
        """Values of several variables from one consistent snapshot (fresh cached values are
        used as is). Names that do not exist are left out of the result."""
        if self._watch_from is not None:
            self._start_watch()
        wanted = list(dict.fromkeys(names))
        found: dict[str, pb.Variable] = {}
        missing = []
        for name in wanted:
            cached = self._core.cache.lookup(name)
            if cached is not None:
                found[name] = cached
            else:
                missing.append(name)
        if missing:
            response = self._invoke(
                self._open_stub().GetVariables, pb.GetVariablesRequest(session_id=self.session_id, names=missing)
            )
            for name, variable in response.variables.items():
                self._core.cache.store(variable, response.snapshot_sequence)
                found[name] = variable
        return {name: self._core.decode(found[name].value) for name in wanted if name in found}

    def set_variables(
        self,
        values: Mapping[str, object],
        atomic: bool = True,
        *,
        expected_versions: Mapping[str, int] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[WriteResult]:
        """Writes several variables with one SetVariables call; one `WriteResult` per write,
        in order.

        With `atomic` (default) either every write is applied or none is, and a failure is
        raised (a `BridgeError` whose context has ``batch_failed_at``). Without, each write
        stands alone and failures are reported in the results. An empty mapping sends
        nothing.
        """
        if not values:
            return []
        schemas = {name: self._core.cache.schema(name) for name in values}
        writes, failed = self._core.batch_writes(values, schemas, expected_versions or {}, atomic)
        response = None
        if writes:
            response = self._invoke(
                self._open_stub().SetVariables, self._core.batch_request(writes, atomic, metadata)
            )
        return self._core.batch_results(response, failed, atomic)

    def history(self, name: str, limit: int = 0) -> list[HistoryEntry]:
        """Retained versions of a variable, newest first (`limit` 0: all retained)."""
        response = self._invoke(
            self._open_stub().GetVariableHistory,
            pb.GetVariableHistoryRequest(session_id=self.session_id, name=name, limit=limit),
        )
        return self._core.history(response)

    def rollback(
        self,
        name: str,
        version: int,
        expected_version: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> Variable:
        """Restores the value of an earlier `version` as a new version; returns the variable."""
        response = self._invoke(
            self._open_stub().RollbackVariable,
            self._core.rollback_request(name, version, expected_version, metadata),
        )
        self._core.cache.store(response.variable, response.sequence)
        return self._core.variable(response.variable)

    def watch(
        self,
        names: Iterable[str] | str | None = None,
        include_initial: bool = True,
        from_version: int | None = None,
        *,
        reconnect: bool = True,
    ) -> Watch:
        """An iterator of the session's variable changes, in sequence order.

        Args:
            names: variables to watch (None: all, including ones registered later).
            include_initial: start with one INITIAL update per existing watched variable.
                Ignored when `from_version` is given.
            from_version: a session change sequence (an update's `sequence` or
                `Watch.last_sequence`): replay every change after it, then go live. Raises
                `WatchLagged` once iterated if those changes are no longer retained.
            reconnect: resume transparently after a dropped connection.

        The SYNCED marker is not yielded; `Watch.synced` tells when the stream is live.
        Close the watch (or use it in a `with` block) to end the stream.
        """
        return Watch(
            self._open_stream_stub().WatchVariables,
            self.session_id,
            names,
            include_initial,
            from_version,
            reconnect=reconnect,
            numpy=self._core.options.numpy,
            context_open=lambda: self.is_open,
        )

    def optimization(
        self,
        variables: Iterable[str] | str,
        optimizer_id: str,
        *,
        lease: float | timedelta = DEFAULT_LEASE,
        renew_every: float | timedelta | None = None,
    ) -> OptimizationLock:
        """An optimization lock on `variables` for `optimizer_id`, acquired when its block
        is entered (``with ctx.optimization(["temperature"], optimizer_id="tune-1") as
        lock:``) or by ``lock.start()``.

        While held, the lease (`lease` seconds) is renewed in the background every
        `renew_every` seconds (default: a third of the lease); writes to the variables
        without the lock's token fail with `VariableLocked`, and ``lock.set(name, value)``
        writes with it. The block's end writes ``lock.final_values`` atomically (not if the
        block raised) and releases the lock. Entering raises `VariableLocked` naming the
        holder when another optimizer holds one of the variables.
        """
        return OptimizationLock(self, variables, optimizer_id, lease=lease, renew_every=renew_every)

    def _load_tools(self) -> dict[str, Tool]:
        response = self._invoke(self._open_stub().ListTools, pb.ListToolsRequest(session_id=self.session_id))
        return {
            info.spec.name: Tool(
                ToolSpec(info.spec, numpy=self._core.options.numpy),
                self._execute,
                self._stream,
            )
            for info in response.tools
        }

    def execute_operation(
        self,
        framework: str,
        operation: str,
        parameters: Mapping[str, object] | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> OperationResult:
        """Runs framework operation `framework.operation` on the engine's worker pool, in this
        session. A parameter given as ``bind("variable")`` is read from the session when the
        engine dispatches the call; anything else is a literal. The generated proxies
        (``mlbridge_adapters.<framework>.proxy``) wrap this with types.

        Raises:
            OperationNotFound, InvalidArgument, TypeMismatch, ConstraintViolation,
            VariableNotFound, FrameworkError (with the worker's Python type and traceback),
            WorkerCrashed, WorkerUnavailable, Timeout.
        """
        request = self._core.operation_request(self.session_id, framework, operation, parameters or {}, metadata)
        response = self._invoke(self._open_stub().ExecuteFrameworkOperation, request)
        return self._core.operation_result(request, response)

    def describe_adapters(self, frameworks: Iterable[str] = ()) -> list[pb.AdapterDescription]:
        """The framework adapters the engine's workers serve (all, or those named), with
        their operations, parameter specs and tools."""
        response = self._invoke(
            self._open_stub().DescribeAdapters, pb.DescribeAdaptersRequest(frameworks=list(frameworks))
        )
        return list(response.adapters)

    def call_tool(self, name: str, **arguments: object) -> Any:
        """Runs tool `name` (same as ``ctx.tools.<name>(**arguments)``)."""
        return self.tools[name](**arguments)

    def _execute(self, name: str, arguments: dict[str, pb.Value]) -> Any:
        response = self._invoke(
            self._open_stub().ExecuteTool,
            pb.ExecuteToolRequest(session_id=self.session_id, tool_name=name, arguments=arguments),
        )
        return self._core.decode(response.result) if response.HasField("result") else None

    def _stream(self, name: str, arguments: dict[str, pb.Value]) -> Iterator[Any]:
        request = pb.ExecuteStreamingToolRequest(session_id=self.session_id, tool_name=name, arguments=arguments)
        return self._chunks(self._open_stream_stub(), request)

    # -- callbacks --------------------------------------------------------------------------

    def register_callback(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        *,
        timeout: float | None = None,
        replace: bool = False,
    ) -> Callable[..., Any]:
        """Registers `fn` with the engine as callback `name` (default: the function's name)
        and answers `fn`, so that it also works as a decorator. The first registration
        starts this context's callback server (`mlbridge.callbacks`); closing the context
        stops it. Parameter specs come from the signature and annotations; the engine checks
        every call's arguments against them.

        Args:
            timeout: the deadline of each call, in seconds (default: the engine's, 30 s).
                When it passes the engine cancels the call: inside the function,
                ``mlbridge.callbacks.current_call().cancelled`` is set (an ``def``
                callback of an asyncio context is cancelled on its loop).
            replace: replace a callback registered under the same name.

        Raises:
            AlreadyExists (the name is taken and `replace` is false), InvalidArgument.
        """
        registered = Registered.of(fn, name, self._callback_loop(), self._core.options.numpy)
        if self._callbacks is None:
            self._callbacks = CallbackServer()
        request = registered.request(self.session_id, self._callbacks.endpoint, timeout, replace, self._callbacks.secret)
        response = self._invoke(self._open_stub().RegisterCallback, request)
        registered.callback_id = response.callback_id
        self._callbacks.add(registered)
        return fn

    def unregister_callback(self, name: str) -> bool:
        """Removes callback `name` from the engine and this context's server; answers
        whether the engine had it."""
        response = self._invoke(
            self._open_stub().UnregisterCallback, pb.UnregisterCallbackRequest(session_id=self.session_id, name=name)
        )
        if self._callbacks is not None:
            self._callbacks.remove(name)
        return response.existed

    def call_callback(self, name: str, **arguments: object) -> Any:
        """Calls callback `name` of this session through the engine (InvokeCallback), as
        engine code and other clients do, and answers its result.

        Raises:
            CallbackNotFound, InvalidArgument, TypeMismatch, ConstraintViolation,
            CallbackError (with the callback's exception type and traceback), Timeout,
            CallbackUnavailable.
        """
        request = pb.InvokeCallbackRequest(
            session_id=self.session_id,
            name=name,
            arguments={key: to_value(value) for key, value in arguments.items()},
        )
        response = self._invoke(self._open_stub().InvokeCallback, request)
        return self._core.decode(response.result) if response.HasField("result") else None

    def register_tool(
        self, fn: Callable[..., Any], name: str | None = None, *, timeout: float | None = None, replace: bool = False
    ) -> Callable[..., Any]:
        """Exposes `fn` as tool `name` (default: the function's name) of this session,
        served by this context's callback server: listed by ListTools and callable through
        ExecuteTool by every client of the session (Rust included), with parameter specs
        from the signature. Answers `fn`.

        Raises:
            AlreadyExists (a tool has the name and `replace` is false), InvalidArgument.
        """
        self.register_callback(fn, name, timeout=timeout, replace=True)
        registered = Registered.of(fn, name, None, False)
        request = pb.RegisterToolsRequest(
            session_id=self.session_id,
            tools=[
                pb.ToolSpec(
                    name=registered.name,
                    description=registered.description,
                    parameters=registered.parameters,
                    return_type=registered.returns.to_proto(),
                )
            ],
            host=pb.ToolHost(kind=pb.TOOL_HOST_KIND_CALLBACK, callback_name=registered.name),
            replace=replace,
        )
        self._invoke(self._open_stub().RegisterTools, request)
        self.tools.refresh()
        return fn

    # -- engine-native resources -----------------------------------------------------------

    def create_resource(
        self,
        kind: str,
        name: str,
        *,
        framework: str = "",
        config: Mapping[str, object] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Resource:
        """Creates an engine-native resource owned by this session and released with it:
        `kind` ``"optimizer"`` (`name` ``"tpe"``, ``"random"`` or ``"grid"``) or
        ``"module"`` (a framework operation: `framework` ``"dspy"`` and `name`
        ``"predict"``, or `name` ``"dspy.predict"``). `config` takes plain Python values;
        `mlbridge.native` wraps both kinds in typed proxies.

        Raises:
            InvalidArgument (naming the bad kind, name or configuration key),
            OperationNotFound, CallbackNotFound, SessionLimitExceeded.
        """
        request = pb.CreateResourceRequest(
            session_id=self.session_id,
            kind=kind,
            name=name,
            framework=framework,
            config={key: to_value(value) for key, value in (config or {}).items()},
            metadata=dict(metadata or {}),
        )
        response = self._invoke(self._open_stub().CreateResource, request)
        return Resource.from_proto(response.resource)

    def invoke_resource(
        self, resource_id: str, method: str, arguments: Mapping[str, object] | None = None, **kwargs: object
    ) -> Any:
        """Calls `method` of resource `resource_id` (e.g. an optimizer's ``run`` or a
        module's ``forward``) with `arguments` and keyword arguments as plain Python values;
        answers its result as plain Python values (``None`` if it returns nothing).

        Raises:
            ResourceNotFound, InvalidArgument (unknown method or argument), and the method's
            own errors (e.g. VariableLocked, CallbackError, FrameworkError).
        """
        given = {**(arguments or {}), **kwargs}
        request = pb.InvokeResourceRequest(
            session_id=self.session_id,
            resource_id=resource_id,
            method=method,
            arguments={key: to_value(value) for key, value in given.items()},
        )
        response = self._invoke(self._open_stub().InvokeResource, request)
        return self._core.decode(response.result) if response.HasField("result") else None

    def release_resource(self, resource_id: str) -> bool:
        """Releases resource `resource_id`; answers whether it existed."""
        request = pb.ReleaseResourceRequest(session_id=self.session_id, resource_id=resource_id)
        response = self._invoke(self._open_stub().ReleaseResource, request)
        return response.existed

    def resources(self) -> list[Resource]:
        """This session's live resources, oldest first."""
        request = pb.ListResourcesRequest(session_id=self.session_id)
        response = self._invoke(self._open_stub().ListResources, request)
        return [Resource.from_proto(resource) for resource in response.resources]

    @property
    def token(self) -> str | None:
        """The bearer token this context sends: the one it was given, or the owner token of
        the session it created (None before then, or if the engine issued none)."""
        return self._core.bearer.token

    def mint_token(
        self,
        *,
        read_only: bool = False,
        variables: Sequence[str] = (),
        deny_tools: bool = False,
        deny_operations: bool = False,
        ttl: float | None = None,
        label: str = "",
    ) -> MintedToken:
        """Mints a token derived from this context's token, never wider than it: read-only,
        limited to variable globs, without tools or operations, expiring after `ttl`
        seconds (never after its parent). Refused with `PermissionDenied` if wider."""
        request = scope_request(
            self.session_id, read_only, tuple(variables), deny_tools, deny_operations, ttl, label
        )
        response = self._invoke(self._open_stub().MintToken, request)
        return MintedToken(response.token, TokenInfo.from_proto(response.info))

    def revoke_token(self, token_id: str) -> list[str]:
        """Revokes a token and every token derived from it (their watches end); answers
        the ids revoked."""
        request = pb.RevokeTokenRequest(session_id=self.session_id, token_id=token_id)
        response = self._invoke(self._open_stub().RevokeToken, request)
        return list(response.revoked)

    def list_tokens(self) -> list[TokenInfo]:
        """This context's token and those derived from it, oldest first (no secrets)."""
        request = pb.ListTokensRequest(session_id=self.session_id)
        response = self._invoke(self._open_stub().ListTokens, request)
        return [TokenInfo.from_proto(info) for info in response.tokens]

    def _stop_callbacks(self) -> None:
        server, self._callbacks = self._callbacks, None
        if server is not None:
            server.stop()
    # @generated end
