"""mlbridge: the Python SDK of the mlbridge engine.

`SessionContext` (blocking) and `AsyncSessionContext` (asyncio) open a session on the
engine and give typed, constrained, versioned variables (cached, kept fresh by a watch),
change streams, batch updates, history and rollback, and typed proxies for the engine's
tools, and framework operations run on the engine's Python workers (`execute_operation`,
or the typed proxies generated from adapter manifests). `Engine.start()` (and
`AsyncEngine.start()`) launches a local engine and hands back its address. Every failure is a `BridgeError` subclass named after its `ErrorKind`.
"""

from __future__ import annotations

from .aio import AsyncSessionContext, AsyncVariableNamespace
from .batch import AsyncBatch, Batch
from .channel import TlsConfig
from .engine import AsyncEngine, Engine, EngineNotFoundError, EngineStartError
from .optimization import AsyncOptimizationLock, OptimizationLock
from . import errors as _errors
from .errors import *  # noqa: F403 (the ErrorKind classes, generated from the proto)
from .snapshots import (
    Binding,
    BoundVariable,
    HistoryEntry,
    OperationResult,
    Resource,
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

# Engine-native optimizers and modules (`mlbridge.native.Optimizer`, ...), loaded with the
# package so that `import mlbridge` is enough.
from . import native as native  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "TlsConfig",
    "Binding",
    "BoundVariable",
    "OperationResult",
    "bind",
    "AsyncBatch",
    "AsyncEngine",
    "AsyncOptimizationLock",
    "AsyncSessionContext",
    "AsyncTool",
    "AsyncToolNamespace",
    "AsyncVariableNamespace",
    "AsyncWatch",
    "Batch",
    "Choice",
    "Constraints",
    "Dtype",
    "Embedding",
    "Engine",
    "EngineNotFoundError",
    "EngineStartError",
    "HistoryEntry",
    "ModuleRef",
    "Resource",
    "OptimizationLock",
    "SessionContext",
    "SessionInfo",
    "Tensor",
    "Tool",
    "ToolNamespace",
    "ToolSpec",
    "UpdateKind",
    "Variable",
    "VariableNamespace",
    "VariableType",
    "VariableUpdate",
    "Watch",
    "WriteResult",
    "from_value",
    "to_value",
]
__all__ += _errors.__all__
