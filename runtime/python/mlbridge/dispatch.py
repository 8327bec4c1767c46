"""Framework adapters as a worker serves them.

A generated ``mlbridge_adapters.<id>.dispatch`` module declares one `Adapter` from the
framework's manifest: its operations and tools with typed parameter specs, and for each a
typed call into the hand-written implementation module. `Adapter.execute` decodes the
engine's parameters (the engine has checked their types and constraints; the worker still
refuses names the spec does not declare and missing required ones), calls the
implementation, and encodes the results.

Implementation functions take a `Call` first (the session, bound variables and call
labels), then the parameters as keyword arguments, and return a mapping of result name to
value (operations) or the tool's value.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from mlbridge_proto import ml_bridge_pb2 as pb

from .errors import (
    BridgeError,
    FrameworkError,
    InvalidArgument,
    OperationNotFound,
    ToolError,
    ToolNotFound,
    clip,
)
from .value_types import Constraints, VariableType
from .values import from_value, to_value

if TYPE_CHECKING:
    from .session import SessionContext

__all__ = [
    "Adapter",
    "Call",
    "HostedTool",
    "OperationKind",
    "OperationSpec",
    "ParameterSpec",
    "RemoteCallback",
    "ResultSpec",
    "elapsed_us",
]

OperationKind = str
"""``"module"``, ``"function"`` or ``"estimator"`` (`OperationKind` on the wire)."""

_KINDS: dict[str, pb.OperationKind.ValueType] = {
    "module": pb.OPERATION_KIND_MODULE,
    "function": pb.OPERATION_KIND_FUNCTION,
    "estimator": pb.OPERATION_KIND_ESTIMATOR,
}


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter of an operation or tool, as the manifest declares it."""

    name: str
    type: VariableType
    required: bool = False
    default: object = None
    has_default: bool = False
    bindable: bool = False
    callback: bool = False
    python_name: str | None = None
    description: str = ""
    constraints: Constraints | None = None

    @property
    def keyword(self) -> str:
        """The framework's own keyword for the parameter (``python_name`` or ``name``)."""
        return self.python_name or self.name

    def to_proto(self) -> pb.ParameterSpec:
        spec = pb.ParameterSpec(
            name=self.name,
            type=self.type.to_proto(),
            required=self.required,
            description=self.description,
            bindable=self.bindable,
            callback=self.callback,
        )
        if self.has_default:
            spec.default_value.CopyFrom(to_value(self.default, self.type))
        if self.constraints is not None:
            spec.constraints.CopyFrom(self.constraints.to_proto())
        return spec

    def decode(self, value: pb.Value) -> object:
        """`value` as Python (the engine has checked it against the type and constraints
        and normalised it before dispatching the call)."""
        return from_value(value)


@dataclass(frozen=True)
class ResultSpec:
    """One named result of an operation."""

    name: str
    type: VariableType
    description: str = ""

    def to_proto(self) -> pb.ResultSpec:
        return pb.ResultSpec(name=self.name, type=self.type.to_proto(), description=self.description)


@dataclass(frozen=True)
class OperationSpec:
    """One operation: its specs and the typed call into the implementation."""

    name: str
    kind: OperationKind
    call: Callable[[ModuleType, Call, Mapping[str, Any]], Mapping[str, object]]
    parameters: tuple[ParameterSpec, ...] = ()
    results: tuple[ResultSpec, ...] = ()
    description: str = ""
    target: str = ""

    def to_proto(self) -> pb.OperationSpec:
        spec = pb.OperationSpec(
            name=self.name,
            kind=_KINDS[self.kind],
            description=self.description,
            parameters=[p.to_proto() for p in self.parameters],
            results=[r.to_proto() for r in self.results],
        )
        if self.target:
            spec.metadata["target"] = self.target
        return spec


@dataclass(frozen=True)
class HostedTool:
    """One Python tool offered by the framework side."""

    name: str
    call: Callable[[ModuleType, Call, Mapping[str, Any]], object]
    parameters: tuple[ParameterSpec, ...] = ()
    returns: VariableType = VariableType.ANY
    streaming: bool = False
    description: str = ""

    def to_proto(self) -> pb.ToolSpec:
        return pb.ToolSpec(
            name=self.name,
            description=self.description,
            parameters=[p.to_proto() for p in self.parameters],
            return_type=self.returns.to_proto(),
            supports_streaming=self.streaming,
        )


@dataclass
class Call:
    """What an implementation function knows about the call it serves.

    Attributes:
        session_id: the calling session.
        engine_address: the engine's MLBridge address, for `session()`.
        session_token: a short-lived token of the session with the caller's scope, which
            `session()` sends (the engine revokes it when the call ends).
        bindings: for each parameter read from a variable, ``(variable name, version)``.
        metadata: the caller's labels.
        labels: labels the implementation returns (``ExecuteFrameworkOperationResponse.metadata``).
    """

    session_id: str = ""
    engine_address: str = ""
    session_token: str = field(default="", repr=False)
    bindings: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    _session: SessionContext | None = None

    def session(self) -> SessionContext:
        """A `SessionContext` on the calling session (opened on first use, closed by `close`)."""
        if self._session is None:
            if not self.engine_address or not self.session_id:
                raise InvalidArgument("this call has no engine session to read variables from")
            from .session import SessionContext

            self._session = SessionContext(
                self.engine_address,
                self.session_id,
                keep_session=True,
                watch_cache=False,
                token=self.session_token or None,
            ).open()
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


class RemoteCallback:
    """A callback of the calling session, given to an implementation for a parameter the
    manifest declares with ``callback = true`` (the caller passes the callback's name).

    Calling it runs the callback through the engine (``InvokeCallback``) under the callback's
    deadline; a failure raises the engine's typed error (``CallbackError`` with the remote
    exception type and traceback, ``TimeoutError``, ``CallbackUnavailable``, ...).
    """

    __slots__ = ("_call", "name")

    def __init__(self, call: Call, name: str) -> None:
        self._call = call
        self.name = name

    def __call__(self, **arguments: object) -> Any:
        return self._call.session().call_callback(self.name, **arguments)

    def __repr__(self) -> str:
        return f"RemoteCallback({self.name!r})"


class Adapter:
    """A framework adapter: the specs of its operations and tools and the calls into them."""

    def __init__(
        self,
        *,
        framework: str,
        implementation: str,
        package: str | None = None,
        description: str = "",
        operations: tuple[OperationSpec, ...] = (),
        tools: tuple[HostedTool, ...] = (),
    ) -> None:
        self.framework = framework
        self.implementation = implementation
        self.package = package
        self.description = description
        self.operations = {op.name: op for op in operations}
        self.tools = {tool.name: tool for tool in tools}
        self._module: ModuleType | None = None
        self._version = ""

    def __repr__(self) -> str:
        return f"Adapter({self.framework!r}, operations={sorted(self.operations)}, tools={sorted(self.tools)})"

    def load(self) -> ModuleType:
        """Imports the framework package and the implementation module (once)."""
        if self._module is None:
            if self.package:
                package = importlib.import_module(self.package)
                self._version = str(getattr(package, "__version__", ""))
            self._module = importlib.import_module(self.implementation)
        return self._module

    def describe(self) -> pb.AdapterDescription:
        self.load()
        return pb.AdapterDescription(
            framework=self.framework,
            python_module=self.implementation,
            version=self._version,
            description=self.description,
            operations=[self.operations[name].to_proto() for name in sorted(self.operations)],
            tools=[self.tools[name].to_proto() for name in sorted(self.tools)],
        )

    def operation(self, name: str) -> OperationSpec:
        try:
            return self.operations[name]
        except KeyError:
            raise OperationNotFound(
                f"framework {self.framework!r} has no operation {clip(name)!r}; "
                f"it has {', '.join(sorted(self.operations)) or 'none'}",
                context={"framework": self.framework, "operation": name},
            ) from None

    def tool(self, name: str) -> HostedTool:
        try:
            return self.tools[name]
        except KeyError:
            raise ToolNotFound(
                f"framework {self.framework!r} has no tool {clip(name)!r}", context={"tool": name}
            ) from None

    def execute(self, operation: str, parameters: Mapping[str, pb.Value], call: Call) -> dict[str, pb.Value]:
        """Runs one operation: decode and validate, call, encode the declared results."""
        spec = self.operation(operation)
        arguments = _decode(spec.parameters, parameters, f"{self.framework}.{spec.name}", call)
        module = self.load()
        try:
            produced = spec.call(module, call, arguments)
        except BridgeError:
            raise
        except Exception as error:  # noqa: BLE001 - reported to the caller with its traceback
            raise _remote(FrameworkError, error, f"{self.framework}.{spec.name}") from error
        return _encode_results(spec, produced, f"{self.framework}.{spec.name}")

    def execute_tool(self, name: str, arguments: Mapping[str, pb.Value], call: Call) -> pb.Value:
        spec = self.tool(name)
        decoded = _decode(spec.parameters, arguments, f"tool {name}", call)
        module = self.load()
        try:
            result = spec.call(module, call, decoded)
        except BridgeError:
            raise
        except Exception as error:  # noqa: BLE001
            raise _remote(ToolError, error, f"tool {name}") from error
        return to_value(result, spec.returns if spec.returns is not VariableType.ANY else None)

    def stream_tool(self, name: str, arguments: Mapping[str, pb.Value], call: Call) -> Iterator[pb.Value]:
        spec = self.tool(name)
        decoded = _decode(spec.parameters, arguments, f"tool {name}", call)
        module = self.load()
        try:
            chunks = spec.call(module, call, decoded)
            if not spec.streaming:
                yield to_value(chunks, spec.returns if spec.returns is not VariableType.ANY else None)
                return
            for chunk in chunks:  # type: ignore[attr-defined]
                yield to_value(chunk)
        except BridgeError:
            raise
        except Exception as error:  # noqa: BLE001
            raise _remote(ToolError, error, f"tool {name}") from error


def _decode(
    specs: tuple[ParameterSpec, ...], given: Mapping[str, pb.Value], what: str, call: Call
) -> dict[str, Any]:
    known = {spec.name for spec in specs}
    unknown = sorted(set(given) - known)
    if unknown:
        raise InvalidArgument(
            f"{what} has no parameter {', '.join(repr(n) for n in unknown)}; "
            f"it takes {', '.join(spec.name for spec in specs) or 'none'}",
            context={"parameter": unknown[0]},
        )
    arguments: dict[str, Any] = {}
    for spec in specs:
        if spec.name in given:
            value = spec.decode(given[spec.name])
            arguments[spec.name] = RemoteCallback(call, value) if spec.callback and isinstance(value, str) else value
        elif spec.has_default:
            arguments[spec.name] = spec.default
        elif spec.required:
            raise InvalidArgument(
                f"{what} is missing required parameter {spec.name!r}", context={"parameter": spec.name}
            )
        else:
            arguments[spec.name] = None
    return arguments


def _encode_results(spec: OperationSpec, produced: Mapping[str, object], what: str) -> dict[str, pb.Value]:
    if not isinstance(produced, Mapping):
        raise FrameworkError(
            f"{what} returned {type(produced).__name__}, expected a mapping of result name to value",
            context={"operation": spec.name},
        )
    declared = {result.name: result for result in spec.results}
    extra = sorted(set(produced) - set(declared))
    missing = sorted(set(declared) - set(produced))
    if extra or missing:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"undeclared {', '.join(str(n) for n in extra)}")
        raise FrameworkError(f"{what} returned the wrong results: {'; '.join(parts)}", context={"operation": spec.name})
    encoded: dict[str, pb.Value] = {}
    for name, result in declared.items():
        hint = result.type if result.type is not VariableType.ANY else None
        encoded[name] = _normalised(to_value(produced[name], hint), result.type)
    return encoded


def _normalised(value: pb.Value, declared: VariableType) -> pb.Value:
    """A result as the engine would store it: an int for a FLOAT result becomes a float,
    a str for a CHOICE result a choice (results reach the caller without an engine check)."""
    case = value.WhichOneof("kind")
    if declared is VariableType.FLOAT and case == "int_value":
        return pb.Value(float_value=float(value.int_value))
    if declared is VariableType.CHOICE and case == "string_value":
        return pb.Value(choice_value=pb.Choice(value=value.string_value))
    return value


def _remote(kind: type[BridgeError], error: BaseException, what: str) -> BridgeError:
    remote_type = f"{type(error).__module__}.{type(error).__qualname__}"
    if type(error).__module__ == "builtins":
        remote_type = type(error).__qualname__
    return kind(
        f"{what} raised {remote_type}: {error}",
        context={"where": what},
        remote_type=remote_type,
        remote_traceback="".join(traceback.format_exception(error)),
    )


def elapsed_us(start: float) -> int:
    """Microseconds since `start` (a `time.perf_counter()` reading)."""
    return int((time.perf_counter() - start) * 1_000_000)

