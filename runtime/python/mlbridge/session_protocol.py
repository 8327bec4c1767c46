"""What `SessionContext` and `AsyncSessionContext` share: options, request building,
cache bookkeeping and decoding. The SDK converts values and guards the transport
(`max_value_bytes`); every other check is the engine's. No I/O happens here; the two context
classes only add the (blocking or awaited) calls."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2

from mlbridge_proto import ml_bridge_pb2 as pb

from .auth import Bearer
from .cache import Schema, VariableCache
from .channel import TlsConfig
from .errors import BridgeError, ErrorKind, clip, error_for
from .snapshots import Binding, HistoryEntry, OperationResult, SessionInfo, Variable, WriteResult
from .value_types import Constraints, VariableType, parse_variable_type
from .values import from_value, to_value

DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(round(seconds * 1e9))
    return message


@dataclass(frozen=True)
class SessionOptions:
    """The settings of a session context (see `SessionContext` for their meaning)."""

    address: str
    session_id: str | None = None
    ttl: float | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    keep_session: bool | None = None
    cache: bool = True
    cache_ttl: float | None = 5.0
    watch_cache: bool = True
    validate: bool = True
    numpy: bool = False
    source: str = ""
    timeout: float | None = 30.0
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    channel_options: Sequence[tuple[str, Any]] = ()
    tls: TlsConfig | None = None
    token: str | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        address: str,
        session_id: str | None,
        *,
        ttl: float | timedelta | None,
        metadata: Mapping[str, str] | None,
        keep_session: bool | None,
        cache: bool,
        cache_ttl: float | timedelta | None,
        watch_cache: bool,
        validate: bool,
        numpy: bool | None,
        source: str | None,
        timeout: float | None,
        max_value_bytes: int,
        channel_options: Sequence[tuple[str, Any]],
        tls: TlsConfig | None = None,
        token: str | None = None,
    ) -> SessionOptions:
        """Options from constructor arguments, with defaults filled in (the engine judges
        the session id and TTL when the session is opened)."""
        ttl_seconds = None if ttl is None else _seconds(ttl)
        return cls(
            address=address,
            session_id=session_id or None,
            ttl=ttl_seconds,
            metadata=dict(metadata or {}),
            keep_session=keep_session,
            cache=cache,
            cache_ttl=None if cache_ttl is None else _seconds(cache_ttl),
            watch_cache=watch_cache and cache,
            validate=validate,
            numpy=importlib.util.find_spec("numpy") is not None if numpy is None else numpy,
            source=f"python:pid-{os.getpid()}" if source is None else source,
            timeout=timeout,
            max_value_bytes=max_value_bytes,
            channel_options=tuple(channel_options),
            tls=tls,
            token=token or None,
        )


class SessionCore:
    """Request building and response handling for one session (see the module docs)."""

    def __init__(self, options: SessionOptions) -> None:
        self.options = options
        self.session_id = ""
        self.info: SessionInfo | None = None
        self.created = False
        self.bearer = Bearer(options.token)
        self.cache = VariableCache(enabled=options.cache, ttl=options.cache_ttl, watched=options.watch_cache)

    # -- sessions ---------------------------------------------------------------------------

    def initialize_request(self) -> pb.InitializeSessionRequest:
        """The InitializeSession request for these options."""
        options = self.options
        request = pb.InitializeSessionRequest(session_id=options.session_id or "", metadata=options.metadata)
        if options.ttl is not None:
            request.ttl.CopyFrom(_duration(options.ttl))
        request.cache.enabled = options.cache
        if options.cache_ttl is not None:
            request.cache.ttl.CopyFrom(_duration(options.cache_ttl))
        return request

    def opened(self, response: pb.InitializeSessionResponse) -> None:
        """Records the session the engine created or returned."""
        self.session_id = response.session.session_id
        self.info = SessionInfo.from_proto(response.session)
        self.created = response.created
        if response.created and self.bearer.token is None and response.owner_token:
            # A context holds the owner token of the session it created.
            self.bearer.token = response.owner_token

    def should_cleanup(self) -> bool:
        """Whether closing the context destroys the session."""
        keep = self.options.keep_session
        return not keep if keep is not None else self.created

    # -- values -----------------------------------------------------------------------------

    def decode(self, value: pb.Value) -> Any:
        """A wire value as a Python object."""
        return from_value(value, numpy=self.options.numpy)

    def variable(self, message: pb.Variable) -> Variable:
        """A wire variable as a `Variable`."""
        return Variable.from_proto(message, numpy=self.options.numpy)

    def converted(self, name: str, schema: Schema | None, value: object) -> pb.Value:
        """`value` as a wire value for variable `name`. The declared type, when the cache
        knows it, only guides conversion (a list of numbers becomes an `Embedding` for an
        EMBEDDING variable); the engine checks the type and constraints. With the
        `validate` option, a value over `max_value_bytes` raises `PayloadTooLarge` before
        it is sent."""
        hint = VariableType.from_proto(schema.type) if schema is not None else None
        wire = to_value(value, hint)
        limit = self.options.max_value_bytes
        size = wire.ByteSize() if self.options.validate else 0
        if size > limit:
            raise error_for(
                ErrorKind.PAYLOAD_TOO_LARGE,
                f"value of variable `{clip(name)}` is {size} bytes, over the limit of {limit} bytes",
                variable=name,
                limit_bytes=limit,
            )
        return wire

    # -- requests ---------------------------------------------------------------------------

    def operation_request(
        self,
        session_id: str,
        framework: str,
        operation: str,
        parameters: Mapping[str, object],
        metadata: Mapping[str, str] | None,
    ) -> pb.ExecuteFrameworkOperationRequest:
        """An ExecuteFrameworkOperation request: `Binding` values become bindings, anything
        else a literal (the engine checks both against the adapter's specs)."""
        wire: dict[str, pb.ParameterValue] = {}
        for name, value in parameters.items():
            if isinstance(value, Binding):
                wire[name] = value.to_proto()
            else:
                wire[name] = pb.ParameterValue(value=to_value(value))
        return pb.ExecuteFrameworkOperationRequest(
            session_id=session_id,
            framework=framework,
            operation=operation,
            parameters=wire,
            metadata=dict(metadata or {}),
        )

    def operation_result(
        self, request: pb.ExecuteFrameworkOperationRequest, response: pb.ExecuteFrameworkOperationResponse
    ) -> OperationResult:
        """The decoded answer to `request`."""
        return OperationResult.from_proto(request.framework, request.operation, response, numpy=self.options.numpy)

    def register_request(
        self,
        name: str,
        type: VariableType | str,
        value: object,
        constraints: Constraints | None,
        description: str,
        metadata: Mapping[str, str] | None,
        depends_on: Iterable[str] = (),
        derived_by: str = "",
    ) -> pb.RegisterVariableRequest:
        """A RegisterVariable request (a derived variable sends no initial value: the
        engine computes it)."""
        declared = parse_variable_type(type)
        wire_constraints = (constraints or Constraints()).to_proto()
        wire_type = declared.to_proto()
        request = pb.RegisterVariableRequest(
            session_id=self.session_id,
            name=name,
            type=wire_type,
            constraints=wire_constraints,
            metadata=metadata or {},
            description=description,
            source=self.options.source,
            depends_on=[depends_on] if isinstance(depends_on, str) else list(depends_on),
            derived_by=derived_by,
        )
        if not derived_by:
            request.initial_value.CopyFrom(self.converted(name, Schema(wire_type, wire_constraints), value))
        return request

    def set_request(
        self, name: str, value: pb.Value, expected_version: int | None, metadata: Mapping[str, str] | None
    ) -> pb.SetVariableRequest:
        """A SetVariable request for an already converted value."""
        request = pb.SetVariableRequest(
            session_id=self.session_id,
            name=name,
            value=value,
            metadata=metadata or {},
            source=self.options.source,
        )
        if expected_version is not None:
            request.expected_version = expected_version
        return request

    def delete_request(self, name: str, expected_version: int | None) -> pb.DeleteVariableRequest:
        """A DeleteVariable request."""
        request = pb.DeleteVariableRequest(session_id=self.session_id, name=name, source=self.options.source)
        if expected_version is not None:
            request.expected_version = expected_version
        return request

    def list_request(self, pattern: str) -> pb.ListVariablesRequest:
        """A ListVariables request."""
        return pb.ListVariablesRequest(session_id=self.session_id, pattern=pattern)

    def rollback_request(
        self, name: str, version: int, expected_version: int | None, metadata: Mapping[str, str] | None
    ) -> pb.RollbackVariableRequest:
        """A RollbackVariable request."""
        request = pb.RollbackVariableRequest(
            session_id=self.session_id,
            name=name,
            target_version=version,
            source=self.options.source,
            metadata=metadata or {},
        )
        if expected_version is not None:
            request.expected_version = expected_version
        return request

    def batch_writes(
        self,
        values: Mapping[str, object],
        schemas: Mapping[str, Schema | None],
        expected_versions: Mapping[str, int],
        atomic: bool,
    ) -> tuple[list[pb.VariableWrite], dict[int, WriteResult]]:
        """The writes of a SetVariables request, converted with the cached schemas as hints.

        A value that cannot be sent (not convertible, over `max_value_bytes`) fails
        locally: with `atomic` the first one raises (as the engine reports a failed
        write); without, it becomes a failed result (by position) and is not sent.
        """
        writes: list[pb.VariableWrite] = []
        failed: dict[int, WriteResult] = {}
        for index, (name, value) in enumerate(values.items()):
            try:
                wire = self.converted(name, schemas.get(name), value)
            except BridgeError as error:
                if atomic:
                    error.context["batch_failed_at"] = f"{index} ({name})"
                    raise
                failed[index] = WriteResult(name=name, version=None, sequence=0, error=error)
                continue
            write = pb.VariableWrite(name=name, value=wire)
            if name in expected_versions:
                write.expected_version = expected_versions[name]
            writes.append(write)
        return writes, failed

    def batch_request(
        self, writes: Iterable[pb.VariableWrite], atomic: bool, metadata: Mapping[str, str] | None
    ) -> pb.SetVariablesRequest:
        """A SetVariables request."""
        return pb.SetVariablesRequest(
            session_id=self.session_id,
            writes=list(writes),
            atomic=atomic,
            source=self.options.source,
            metadata=metadata or {},
        )

    def batch_results(
        self, response: pb.SetVariablesResponse | None, failed: Mapping[int, WriteResult], atomic: bool
    ) -> list[WriteResult]:
        """Merges the engine's results with local failures, updates the cache, and raises
        the failure of an atomic batch."""
        remote = iter(response.results if response is not None else ())
        results: list[WriteResult] = []
        for index in range(len(failed) + (len(response.results) if response is not None else 0)):
            if index in failed:
                results.append(failed[index])
                continue
            message = next(remote)
            result = WriteResult.from_proto(message)
            if result.ok:
                self.cache.invalidate(result.name, result.sequence)
            results.append(result)
        if atomic:
            for result in results:
                if result.error is not None:
                    raise result.error
        return results

    def history(self, response: pb.GetVariableHistoryResponse) -> list[HistoryEntry]:
        """Decoded history entries, newest first."""
        return [HistoryEntry.from_proto(entry, numpy=self.options.numpy) for entry in response.entries]


def not_open() -> RuntimeError:
    """The error for using a context that is not open."""
    return RuntimeError("the session context is not open: use it in a `with` block or call open() first")


def read_only_async(name: str) -> TypeError:
    """The error for assigning through an async context's item or attribute access."""
    return TypeError(
        f"cannot assign `{name}` on an AsyncSessionContext without awaiting: use "
        f"`await ctx.set_variable({name!r}, value)` or `async with ctx.batch() as b: b[{name!r}] = value`"
    )
