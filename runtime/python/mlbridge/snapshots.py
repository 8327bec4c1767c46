"""Read-only snapshots the SDK returns: sessions, variables, history entries, watch updates
and batch write results, decoded from their wire messages."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from mlbridge_proto import ml_bridge_pb2 as pb

from .errors import BridgeError, error_from_proto
from .value_types import Constraints, VariableType
from .values import from_value

__all__ = [
    "Binding",
    "BoundVariable",
    "HistoryEntry",
    "OperationResult",
    "SessionInfo",
    "UpdateKind",
    "Variable",
    "VariableUpdate",
    "WriteResult",
    "bind",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def timestamp(message: timestamp_pb2.Timestamp) -> datetime:
    """A wire timestamp as an aware UTC datetime."""
    return _EPOCH + timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)


def duration(message: duration_pb2.Duration) -> timedelta:
    """A wire duration as a timedelta."""
    return timedelta(seconds=message.seconds, microseconds=message.nanos // 1000)


class UpdateKind(str, enum.Enum):
    """What a watch update or history entry reports."""

    INITIAL = "initial"
    """Current state at subscription time (`watch(include_initial=True)`)."""
    SET = "set"
    """The value was written."""
    DELETED = "deleted"
    """The variable was deleted (`value` is its last value)."""
    ROLLED_BACK = "rolled_back"
    """The variable was rolled back to an earlier version's value."""
    REGISTERED = "registered"
    """The variable was registered."""
    SYNCED = "synced"
    """Marker: the stream is live from here on. Not yielded by `watch()`."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_proto(cls, value: int) -> UpdateKind:
        """The kind for a wire value."""
        name = pb.VariableUpdateKind.Name(pb.VariableUpdateKind.ValueType(value)).removeprefix("VARIABLE_UPDATE_KIND_")
        return cls.__members__[name]


@dataclass(frozen=True)
class SessionInfo:
    """A session's state as the engine reported it."""

    session_id: str
    created_at: datetime
    last_activity_at: datetime
    expires_at: datetime
    ttl: timedelta
    metadata: Mapping[str, str]
    variable_count: int
    tool_count: int
    current_sequence: int
    """The session's change sequence (see `watch(from_version=...)`)."""
    callback_count: int = 0
    """Callbacks registered in the session (`register_callback`)."""
    resource_count: int = 0
    """Live engine-native resources of the session (`create_resource`)."""

    @classmethod
    def from_proto(cls, message: pb.Session) -> SessionInfo:
        """Decodes a wire `Session`."""
        return cls(
            session_id=message.session_id,
            created_at=timestamp(message.created_at),
            last_activity_at=timestamp(message.last_activity_at),
            expires_at=timestamp(message.expires_at),
            ttl=duration(message.ttl),
            metadata=dict(message.metadata),
            variable_count=message.variable_count,
            tool_count=message.tool_count,
            current_sequence=message.current_sequence,
            callback_count=message.callback_count,
            resource_count=message.resource_count,
        )


@dataclass(frozen=True)
class Resource:
    """An engine-native resource (a module or an optimizer) owned by a session."""

    resource_id: str
    kind: str
    """``"module"`` or ``"optimizer"``."""
    name: str
    """The implementation, e.g. ``"tpe"`` or ``"predict"``."""
    framework: str
    """The framework whose workers it uses; empty for pure engine resources."""
    methods: tuple[str, ...]
    """The methods `invoke_resource` accepts."""
    metadata: Mapping[str, str]
    created_at: datetime

    @classmethod
    def from_proto(cls, message: pb.Resource) -> Resource:
        """Decodes a wire `Resource`."""
        return cls(
            resource_id=message.resource_id,
            kind=message.kind,
            name=message.name,
            framework=message.framework,
            methods=tuple(message.methods),
            metadata=dict(message.metadata),
            created_at=timestamp(message.created_at),
        )


@dataclass(frozen=True)
class Variable:
    """A variable's full state: type, constraints, value and version."""

    name: str
    type: VariableType
    value: Any
    constraints: Constraints
    version: int
    description: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    optimizing: bool = False
    optimizer_id: str = ""
    source: str = ""
    depends_on: tuple[str, ...] = ()
    """The variables this one depends on."""
    derived_by: str = ""
    """For a derived variable, the engine tool that computes it from `depends_on`."""

    @classmethod
    def from_proto(cls, message: pb.Variable, *, numpy: bool = False) -> Variable:
        """Decodes a wire `Variable`."""
        return cls(
            name=message.name,
            type=VariableType.from_proto(message.type) or VariableType.ANY,
            value=from_value(message.value, numpy=numpy),
            constraints=Constraints.from_proto(message.constraints),
            version=message.version,
            description=message.description,
            metadata=dict(message.metadata),
            created_at=timestamp(message.created_at) if message.HasField("created_at") else None,
            updated_at=timestamp(message.updated_at) if message.HasField("updated_at") else None,
            optimizing=message.optimizing,
            optimizer_id=message.optimizer_id,
            source=message.source,
            depends_on=tuple(message.depends_on),
            derived_by=message.derived_by,
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One retained version of a variable (newest first in `history()`)."""

    version: int
    value: Any
    timestamp: datetime
    source: str
    metadata: Mapping[str, str]
    kind: UpdateKind
    restored_from_version: int
    """For ROLLED_BACK: the version whose value was restored; 0 otherwise."""

    @classmethod
    def from_proto(cls, message: pb.VariableVersion, *, numpy: bool = False) -> HistoryEntry:
        """Decodes a wire `VariableVersion`."""
        return cls(
            version=message.version,
            value=from_value(message.value, numpy=numpy),
            timestamp=timestamp(message.timestamp),
            source=message.source,
            metadata=dict(message.metadata),
            kind=UpdateKind.from_proto(message.kind),
            restored_from_version=message.restored_from_version,
        )


@dataclass(frozen=True)
class VariableUpdate:
    """One change delivered by `watch()`.

    `sequence` is the session's change number; pass the last one processed as
    `watch(from_version=...)` to resume without losing or repeating changes.
    """

    kind: UpdateKind
    name: str
    value: Any
    """The value after the change (for DELETED: the last value)."""
    old_value: Any
    """The value before the change (SET, ROLLED_BACK, DELETED); None otherwise."""
    version: int
    sequence: int
    source: str
    timestamp: datetime | None
    metadata: Mapping[str, str]
    variable: Variable | None

    @classmethod
    def from_proto(cls, message: pb.VariableUpdate, *, numpy: bool = False) -> VariableUpdate:
        """Decodes a wire `VariableUpdate`."""
        variable = Variable.from_proto(message.variable, numpy=numpy) if message.HasField("variable") else None
        return cls(
            kind=UpdateKind.from_proto(message.kind),
            name=message.variable_name,
            value=variable.value if variable is not None else None,
            old_value=from_value(message.old_value, numpy=numpy) if message.HasField("old_value") else None,
            version=variable.version if variable is not None else 0,
            sequence=message.sequence,
            source=message.source,
            timestamp=timestamp(message.timestamp) if message.HasField("timestamp") else None,
            metadata=dict(message.metadata),
            variable=variable,
        )


@dataclass(frozen=True)
class WriteResult:
    """The outcome of one write of `set_variables()`: `version` after a successful write,
    or the `error` that stopped it (neither for a valid write not applied because another
    write of an atomic batch failed)."""

    name: str
    version: int | None
    sequence: int
    error: BridgeError | None

    @property
    def ok(self) -> bool:
        """Whether the write was applied."""
        return self.version is not None

    @classmethod
    def from_proto(cls, message: pb.VariableWriteResult) -> WriteResult:
        """Decodes a wire `VariableWriteResult`."""
        outcome = message.WhichOneof("outcome")
        return cls(
            name=message.name,
            version=message.new_version if outcome == "new_version" else None,
            sequence=message.sequence,
            error=error_from_proto(message.error) if outcome == "error" else None,
        )


@dataclass(frozen=True)
class Binding:
    """A framework-operation parameter bound to a session variable (made by `bind`): the
    engine reads the variable's current value when it dispatches the call."""

    variable: str

    def to_proto(self) -> pb.ParameterValue:
        """The wire `ParameterValue`."""
        return pb.ParameterValue(binding=pb.VariableBinding(variable_name=self.variable))


def bind(variable: str) -> Binding:
    """Binds an operation parameter to session variable `variable`, e.g.
    ``Dspy(ctx).predict(sig, inputs, temperature=bind("temperature"))``."""
    return Binding(variable)


@dataclass(frozen=True)
class BoundVariable:
    """The variable (and its version) a bound parameter was read from."""

    name: str
    version: int


@dataclass(frozen=True)
class OperationResult:
    """The engine's answer to a framework operation.

    Attributes:
        framework, operation: what ran.
        results: the named results, decoded.
        resolved_parameters: every parameter value the worker received (literals, bound
            variable values and defaults), decoded.
        bindings: for each bound parameter, the variable and version it was read from.
        worker_id: the worker that ran it.
        execution_us: time inside the worker, in microseconds.
        total_us: time inside the engine (resolution, queueing, transport, execution).
        metadata: labels returned by the adapter (e.g. the model name).
    """

    framework: str
    operation: str
    results: Mapping[str, Any]
    resolved_parameters: Mapping[str, Any]
    bindings: Mapping[str, BoundVariable]
    worker_id: str
    execution_us: int
    total_us: int
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(
        cls, framework: str, operation: str, message: pb.ExecuteFrameworkOperationResponse, *, numpy: bool = False
    ) -> OperationResult:
        """Decodes a wire `ExecuteFrameworkOperationResponse`."""
        return cls(
            framework=framework,
            operation=operation,
            results={name: from_value(value, numpy=numpy) for name, value in message.results.items()},
            resolved_parameters={
                name: from_value(value, numpy=numpy) for name, value in message.resolved_parameters.items()
            },
            bindings={
                name: BoundVariable(bound.variable_name, bound.version) for name, bound in message.bindings.items()
            },
            worker_id=message.worker_id,
            execution_us=message.execution_us,
            total_us=message.total_us,
            metadata=dict(message.metadata),
        )
