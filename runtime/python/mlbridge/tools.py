"""Typed proxies for the tools a session can call, built from `ListTools` specs.

`ctx.tools.add(a=1.0, b=2.0)` converts the arguments and calls `ExecuteTool` (the engine
checks them against the tool's parameter specs); `ctx.tools.count.stream(to=3)` iterates the chunks of
`ExecuteStreamingTool`. Each proxy has an `inspect.Signature` (keyword-only parameters,
annotated from the spec types) and a docstring built from the descriptions.
"""

from __future__ import annotations

import inspect
from types import GenericAlias, MappingProxyType
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, Generic, Optional, TypeVar

from mlbridge_proto import ml_bridge_pb2 as pb

from .errors import ToolNotFound, clip
from .value_types import Embedding, ModuleRef, Tensor, VariableType
from .values import from_value, to_value

__all__ = ["AsyncTool", "AsyncToolNamespace", "Tool", "ToolNamespace", "ToolSpec"]

_ANNOTATIONS: Mapping[VariableType, Any] = MappingProxyType(
    {
        VariableType.FLOAT: float,
        VariableType.INTEGER: int,
        VariableType.STRING: str,
        VariableType.BOOLEAN: bool,
        VariableType.CHOICE: str,
        VariableType.MODULE: ModuleRef,
        VariableType.EMBEDDING: Embedding,
        VariableType.TENSOR: Tensor,
        VariableType.LIST: list[Any],
        VariableType.MAP: dict[str, Any],
        VariableType.BYTES: bytes,
        VariableType.ANY: Any,
    }
)


class UnknownTool(ToolNotFound, AttributeError):
    """`ctx.tools.<name>` for a tool the session cannot see (also an AttributeError, so
    `hasattr` and `getattr(..., default)` work)."""


def _annotation(ty: int, nullable: bool) -> Any:
    declared = VariableType.from_proto(ty) or VariableType.ANY
    annotation = _ANNOTATIONS[declared]
    if nullable and annotation is not Any:
        return Optional[annotation]  # noqa: UP045 - a runtime object, shown by inspect
    return annotation


class ToolSpec:
    """A tool's description: its signature, docstring and argument conversion."""

    def __init__(self, spec: pb.ToolSpec, *, numpy: bool = False) -> None:
        self.proto = spec
        self.name = spec.name
        self.description = spec.description
        self.supports_streaming = spec.supports_streaming
        self._numpy = numpy
        self.signature = self._signature()
        self.doc = self._doc()

    def _signature(self) -> inspect.Signature:
        parameters = []
        for param in self.proto.parameters:
            nullable = param.HasField("constraints") and param.constraints.nullable
            annotation = _annotation(param.type, nullable)
            if param.required and not param.HasField("default_value"):
                default: Any = inspect.Parameter.empty
            elif param.HasField("default_value"):
                default = from_value(param.default_value, numpy=self._numpy)
            else:
                default = None
            parameters.append(
                inspect.Parameter(param.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            )
        returns = _annotation(self.proto.return_type, False)
        if self.supports_streaming:
            returns = GenericAlias(Iterator, (returns,))
        return inspect.Signature(parameters, return_annotation=returns)

    def _doc(self) -> str:
        lines = [self.description or f"The `{self.name}` tool."]
        if self.proto.parameters:
            lines += ["", "Args:"]
            for param in self.proto.parameters:
                declared = VariableType.from_proto(param.type) or VariableType.ANY
                optional = "" if param.required else ", optional"
                text = f" {param.description}" if param.description else ""
                lines.append(f"    {param.name} ({declared}{optional}):{text}")
        if self.supports_streaming:
            lines += ["", "Streams its results: iterate `.stream(...)`."]
        return "\n".join(lines)

    def arguments(self, given: Mapping[str, object]) -> dict[str, pb.Value]:
        """`given` as wire values, each converted with its declared type as a hint (a list
        of numbers becomes an `Embedding` for an EMBEDDING argument). The engine checks
        names, types and constraints (`ToolRegistry::prepare`)."""
        hints = {param.name: VariableType.from_proto(param.type) for param in self.proto.parameters}
        return {key: to_value(value, hints.get(key)) for key, value in given.items()}


_Result = TypeVar("_Result")
_Stream = TypeVar("_Stream")


class _ToolProxy(Generic[_Result, _Stream]):
    def __init__(
        self,
        spec: ToolSpec,
        call: Callable[[str, dict[str, pb.Value]], _Result],
        stream: Callable[[str, dict[str, pb.Value]], _Stream],
    ) -> None:
        self.spec = spec
        self._call = call
        self._stream = stream
        self.__name__ = spec.name
        self.__qualname__ = f"tools.{spec.name}"
        self.__doc__ = spec.doc
        self.__signature__ = spec.signature

    def __call__(self, **arguments: object) -> _Result:
        return self._call(self.spec.name, self.spec.arguments(arguments))

    def stream(self, **arguments: object) -> _Stream:
        """Runs the tool with ExecuteStreamingTool and iterates its chunk values (a
        non-streaming tool yields its result as one chunk)."""
        return self._stream(self.spec.name, self.spec.arguments(arguments))

    def __repr__(self) -> str:
        return f"<tool {self.spec.name}{self.spec.signature}>"


class Tool(_ToolProxy[Any, Iterator[Any]]):
    """A callable proxy for one tool: ``tool(arg=...)`` returns its result;
    ``tool.stream(arg=...)`` iterates its chunks."""


class AsyncTool(_ToolProxy[Awaitable[Any], AsyncIterator[Any]]):
    """The asyncio proxy: ``await tool(arg=...)``; ``async for chunk in tool.stream(arg=...)``."""


_ToolT = TypeVar("_ToolT", Tool, AsyncTool)


class _Namespace(Generic[_ToolT]):
    def __init__(self) -> None:
        self._tools: dict[str, _ToolT] = {}

    def _replace(self, tools: Mapping[str, _ToolT]) -> None:
        self._tools = dict(tools)

    def __getattr__(self, name: str) -> _ToolT:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __getitem__(self, name: str) -> _ToolT:
        tool = self._tools.get(name)
        if tool is None:
            raise UnknownTool(f"no tool named `{clip(name)}`", context={"tool": name})
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tools))

    def __len__(self) -> int:
        return len(self._tools)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self._tools))

    def specs(self) -> list[ToolSpec]:
        """The specs of every known tool, sorted by name."""
        return [self._tools[name].spec for name in sorted(self._tools)]


class ToolNamespace(_Namespace[Tool]):
    """``ctx.tools``: one `Tool` attribute per tool visible to the session (loaded on first
    use; `refresh()` reloads)."""

    def __init__(self, load: Callable[[], Mapping[str, Tool]]) -> None:
        super().__init__()
        self._load = load
        self._loaded = False

    def refresh(self) -> ToolNamespace:
        """Reloads the tool specs from the engine."""
        self._replace(self._load())
        self._loaded = True
        return self

    def _ensure(self) -> None:
        if not self._loaded:
            self.refresh()

    def __getitem__(self, name: str) -> Tool:
        self._ensure()
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return super().__iter__()

    def __len__(self) -> int:
        self._ensure()
        return super().__len__()

    def __dir__(self) -> list[str]:
        self._ensure()
        return super().__dir__()

    def specs(self) -> list[ToolSpec]:
        """The specs of every tool, sorted by name."""
        self._ensure()
        return super().specs()


class AsyncToolNamespace(_Namespace[AsyncTool]):
    """``ctx.tools`` of an `AsyncSessionContext`: loaded when the context opens;
    ``await ctx.tools.refresh()`` reloads."""

    def __init__(self, load: Callable[[], Awaitable[Mapping[str, AsyncTool]]]) -> None:
        super().__init__()
        self._load = load

    async def refresh(self) -> AsyncToolNamespace:
        """Reloads the tool specs from the engine."""
        self._replace(await self._load())
        return self


def _declared(annotation: Any) -> tuple[VariableType, bool]:
    """The wire type of a Python annotation (the inverse of `_ANNOTATIONS`) and whether it
    admits None. Unknown or missing annotations are ANY."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return VariableType.ANY, False
    args = getattr(annotation, "__args__", None)
    if args and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        declared, _ = _declared(rest[0]) if len(rest) == 1 else (VariableType.ANY, False)
        return declared, True
    origin = getattr(annotation, "__origin__", None) or annotation
    for declared, known in _ANNOTATIONS.items():
        known_origin = getattr(known, "__origin__", None) or known
        if known_origin is origin and declared is not VariableType.CHOICE:
            return declared, False
    return VariableType.ANY, False


def specs_from_signature(fn: Callable[..., Any]) -> tuple[list[pb.ParameterSpec], VariableType, str]:
    """The parameter specs, result type and description of a Python function, from its
    signature, annotations and docstring: a parameter without a default is required, one
    with a default carries it, ``X | None`` makes the value nullable. Used for callbacks
    (and Python-hosted tools)."""
    from .dispatch import ParameterSpec
    from .value_types import Constraints

    import typing

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations are ANY
        hints = {}
    specs = []
    signature = inspect.signature(fn)
    for parameter in signature.parameters.values():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        declared, nullable = _declared(hints.get(parameter.name, parameter.annotation))
        has_default = parameter.default is not inspect.Parameter.empty
        specs.append(
            ParameterSpec(
                name=parameter.name,
                type=declared,
                required=not has_default,
                default=parameter.default if has_default else None,
                has_default=has_default and parameter.default is not None,
                constraints=Constraints(nullable=True) if nullable or parameter.default is None else None,
            ).to_proto()
        )
    returns, _ = _declared(hints.get("return", signature.return_annotation))
    return specs, returns, inspect.getdoc(fn) or ""
