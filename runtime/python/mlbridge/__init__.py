"""mlbridge: the Python SDK of the mlbridge engine.

`SessionContext` (blocking) and `AsyncSessionContext` (asyncio) open a session on the
engine and give typed, constrained, versioned variables (cached, kept fresh by a watch),
change streams, batch updates, history and rollback, and typed proxies for the engine's
tools, and framework operations run on the engine's Python workers (`execute_operation`,
or the typed proxies generated from adapter manifests). Every failure is a `BridgeError` subclass named after its `ErrorKind`.
"""

from __future__ import annotations

from .aio import AsyncSessionContext, AsyncVariableNamespace
from .batch import AsyncBatch, Batch
from .optimization import AsyncOptimizationLock, OptimizationLock
from .errors import (
    AlreadyExists,
    BridgeError,
    CallbackError,
    CallbackNotFound,
    ConstraintViolation,
    ErrorKind,
    FrameworkError,
    InternalError,
    InvalidArgument,
    LockNotHeld,
    OperationNotFound,
    PayloadTooLarge,
    PermissionDenied,
    ResourceNotFound,
    SessionExpired,
    SessionLimitExceeded,
    SessionNotFound,
    Timeout,
    ToolError,
    ToolNotFound,
    TypeMismatch,
    Unavailable,
    UnconvertibleValue,
    UnknownError,
    VariableAlreadyExists,
    VariableLocked,
    VariableNotFound,
    VersionConflict,
    WatchLagged,
    WorkerCrashed,
    WorkerUnavailable,
)
from .snapshots import (
    Binding,
    BoundVariable,
    HistoryEntry,
    OperationResult,
    SessionInfo,
    UpdateKind,
    Variable,
    VariableUpdate,
    WriteResult,
    bind,
)
from .session import SessionContext, VariableNamespace
from .tools import AsyncTool, AsyncToolNamespace, Tool, ToolNamespace, ToolSpec
from .value_types import Choice, Constraints, Dtype, Embedding, ModuleRef, Tensor, VariableType
from .values import from_value, to_value
from .watch import AsyncWatch, Watch

__version__ = "0.1.0"

__all__ = [
    "Binding",
    "BoundVariable",
    "OperationResult",
    "bind",
    "AlreadyExists",
    "AsyncBatch",
    "AsyncOptimizationLock",
    "AsyncSessionContext",
    "AsyncTool",
    "AsyncToolNamespace",
    "AsyncVariableNamespace",
    "AsyncWatch",
    "Batch",
    "BridgeError",
    "CallbackError",
    "CallbackNotFound",
    "Choice",
    "ConstraintViolation",
    "Constraints",
    "Dtype",
    "Embedding",
    "ErrorKind",
    "FrameworkError",
    "HistoryEntry",
    "InternalError",
    "InvalidArgument",
    "LockNotHeld",
    "ModuleRef",
    "OperationNotFound",
    "OptimizationLock",
    "PayloadTooLarge",
    "PermissionDenied",
    "ResourceNotFound",
    "SessionContext",
    "SessionExpired",
    "SessionInfo",
    "SessionLimitExceeded",
    "SessionNotFound",
    "Tensor",
    "Timeout",
    "Tool",
    "ToolError",
    "ToolNamespace",
    "ToolNotFound",
    "ToolSpec",
    "TypeMismatch",
    "Unavailable",
    "UnconvertibleValue",
    "UnknownError",
    "UpdateKind",
    "Variable",
    "VariableAlreadyExists",
    "VariableLocked",
    "VariableNamespace",
    "VariableNotFound",
    "VariableType",
    "VariableUpdate",
    "VersionConflict",
    "Watch",
    "WatchLagged",
    "WorkerCrashed",
    "WorkerUnavailable",
    "WriteResult",
    "from_value",
    "to_value",
]
