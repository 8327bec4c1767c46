"""`VariableAware` objects: framework objects whose parameters follow session variables.

A *binding* ties one parameter of a framework object to one variable of an engine session.
Before the object does its work it reads its bound variables (one ``get_variables`` call,
served from the `SessionContext` cache while the watch keeps it fresh) and applies them,
so changing a variable in the engine changes the next call without re-creating anything.

- `VariableAwareMixin` is mixed into a framework class, ahead of it:
  ``class VariableAwarePredict(VariableAwareMixin, dspy.Predict)`` (the generator emits
  these from the adapter manifests). It syncs before every ``forward``/``aforward``.
- `VariableAwareEstimator` wraps a scikit-learn estimator or pipeline and syncs with
  ``set_params`` before fitting.
- `VariableAwareProxyTool` wraps a tool (``ctx.tools.add`` or any callable) and injects
  bound variables as arguments.

```python
with SessionContext(address) as ctx:
    ctx.register_variable("temperature", "float", 0.3)
    qa = VariableAwarePredict("question -> answer", ctx=ctx, bindings={"temperature": "temperature"})
    qa(question="...")              # the LM request carries temperature 0.3
    ctx["temperature"] = 0.9
    qa(question="...")              # ... and now 0.9
```

A bound variable that the session does not have raises `VariableNotFound` naming the
variable, the parameter and the object. This module imports no framework: an object's
framework-specific application of values lives in its implementation module
(``apply_bindings``), e.g. `mlbridge.frameworks.dspy`.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar, Union, cast

from .aio import AsyncSessionContext
from .errors import InvalidArgument, VariableNotFound, clip
from .session import SessionContext
from .value_types import Choice

__all__ = [
    "BoundVariable",
    "SessionLike",
    "VariableAwareEstimator",
    "VariableAwareMixin",
    "VariableAwareProxyTool",
]

SessionLike = Union[SessionContext, AsyncSessionContext]
"""A blocking or an asyncio session: either can serve bindings (blocking calls need a
blocking session; ``aforward``/``afit``/``acall`` take either)."""

_Mixin = TypeVar("_Mixin", bound="VariableAwareMixin")
_Estimator = TypeVar("_Estimator", bound="VariableAwareEstimator[Any]")
_ProxyTool = TypeVar("_ProxyTool", bound="VariableAwareProxyTool")
E = TypeVar("E")
"""The wrapped estimator's type."""


class BoundVariable:
    """Stands for a bound argument's value in a `VariableAwareProxyTool` signature:
    ``add(*, a: float, b: float = variable('offset'))``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"variable({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BoundVariable) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("BoundVariable", self.name))


# -- shared: reading bound variables -------------------------------------------------------------


def _check_variable(owner: str, parameter: str, variable: object) -> str:
    if not isinstance(variable, str) or not variable:
        raise InvalidArgument(
            f"{owner}: parameter `{parameter}` must be bound to a variable name, got {clip(repr(variable))}",
            context={"parameter": parameter},
        )
    return variable


def _plain(value: object) -> object:
    # A CHOICE variable's value is a `Choice` (a str subclass); frameworks get the str.
    return str(value) if isinstance(value, Choice) else value


def _assemble(
    found: Mapping[str, Any], bindings: Mapping[str, str], owner: str, session_id: str
) -> dict[str, object]:
    for parameter, variable in bindings.items():
        if variable not in found:
            raise VariableNotFound(
                f"{owner}: parameter `{parameter}` is bound to variable `{variable}`, "
                f"which session `{session_id}` does not have",
                context={"variable": variable, "parameter": parameter, "session_id": session_id},
            )
    return {parameter: _plain(found[variable]) for parameter, variable in bindings.items()}


def _no_session(owner: str, bindings: Mapping[str, str]) -> InvalidArgument:
    bound = ", ".join(f"{parameter} -> {variable}" for parameter, variable in bindings.items())
    return InvalidArgument(
        f"{owner} has bindings ({bound}) but no session to read them from; pass ctx=",
        context={"parameter": next(iter(bindings))},
    )


def _read(ctx: SessionLike | None, bindings: Mapping[str, str], owner: str) -> dict[str, object]:
    """The bound variables' values by parameter, from a blocking session."""
    if not bindings:
        return {}
    if ctx is None:
        raise _no_session(owner, bindings)
    if isinstance(ctx, AsyncSessionContext):
        raise InvalidArgument(
            f"{owner} is bound through an AsyncSessionContext, which a blocking call cannot read; "
            "use the async method (aforward/acall/afit) or a SessionContext",
            context={"parameter": next(iter(bindings))},
        )
    found = ctx.get_variables(bindings.values())
    return _assemble(found, bindings, owner, ctx.session_id)


async def _aread(ctx: SessionLike | None, bindings: Mapping[str, str], owner: str) -> dict[str, object]:
    """The bound variables' values by parameter, from either kind of session (a blocking
    session is read in a thread, so the event loop never blocks)."""
    if not bindings:
        return {}
    if ctx is None:
        raise _no_session(owner, bindings)
    names = list(bindings.values())
    if isinstance(ctx, AsyncSessionContext):
        found = await ctx.get_variables(names)
    else:
        found = await asyncio.to_thread(ctx.get_variables, names)
    return _assemble(found, bindings, owner, ctx.session_id)


def _listing(names: Iterable[str]) -> str:
    return ", ".join(names) or "none"


# -- framework modules (mixin) -------------------------------------------------------------------


class VariableAwareMixin:
    """Makes a framework class follow session variables; mix it in ahead of the class.

    Subclasses declare what can be bound:

    - ``BINDABLE``: manifest parameter name -> the framework's own keyword
      (``{"temperature": "temperature"}``; scikit-learn would have ``{"c": "C"}``).
    - ``IMPLEMENTATION``: the adapter's implementation module. If it defines
      ``apply_bindings(obj, values)``, values (keyed by manifest name) are applied with it;
      otherwise with ``obj.set_params(**{keyword: value})`` if the object has
      ``set_params``, else ``setattr(obj, keyword, value)``.

    The constructor takes ``ctx`` and ``bindings`` (parameter -> variable name) as keyword
    arguments and passes everything else to the framework class. ``forward`` and
    ``aforward`` sync the bound variables, then run the framework's. Copies
    (``copy.deepcopy``, DSPy's ``deepcopy``/``reset_copy``) stay bound to the same session;
    pickling drops the session (set ``ctx`` again after loading).
    """

    BINDABLE: ClassVar[Mapping[str, str]] = MappingProxyType({})
    IMPLEMENTATION: ClassVar[str] = ""

    _mlbridge_ctx: SessionLike | None
    _mlbridge_bindings: dict[str, str]
    _mlbridge_lock: threading.Lock

    def __init__(
        self,
        *args: Any,
        ctx: SessionLike | None = None,
        bindings: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._mlbridge_ctx = ctx
        self._mlbridge_bindings = {}
        self._mlbridge_lock = threading.Lock()
        cast(Any, super()).__init__(*args, **kwargs)
        for parameter, variable in (bindings or {}).items():
            self.bind_to_variable(parameter, variable)

    @property
    def ctx(self) -> SessionLike | None:
        """The session the bound variables are read from."""
        return self._mlbridge_ctx

    @ctx.setter
    def ctx(self, ctx: SessionLike | None) -> None:
        self._mlbridge_ctx = ctx

    @property
    def bindings(self) -> Mapping[str, str]:
        """The bindings, manifest parameter name -> variable name (a read-only copy)."""
        return MappingProxyType(dict(self._mlbridge_bindings))

    def _owner(self) -> str:
        return type(self).__name__

    def _parameter(self, parameter: str) -> str:
        """`parameter` as a manifest name, accepting the framework keyword too."""
        if parameter in self.BINDABLE:
            return parameter
        for name, keyword in self.BINDABLE.items():
            if keyword == parameter:
                return name
        raise InvalidArgument(
            f"{self._owner()} has no bindable parameter `{parameter}`; bindable: {_listing(self.BINDABLE)}",
            context={"parameter": str(parameter)},
        )

    def bind_to_variable(self: _Mixin, parameter: str, variable: str) -> _Mixin:
        """Binds `parameter` (a manifest name, or the framework keyword) to the session
        variable `variable`; returns self. Rebinding replaces the old binding. The variable
        is read at the next sync, not now."""
        name = self._parameter(parameter)
        self._mlbridge_bindings[name] = _check_variable(self._owner(), name, variable)
        return self

    def unbind(self: _Mixin, parameter: str) -> _Mixin:
        """Removes `parameter`'s binding (if any); the last applied value stays. Returns self."""
        self._mlbridge_bindings.pop(self._parameter(parameter), None)
        return self

    def sync_variables(self) -> dict[str, object]:
        """Reads every bound variable (one ``get_variables`` call) and applies the values;
        returns them by manifest parameter name."""
        with self._mlbridge_lock:
            values = _read(self._mlbridge_ctx, dict(self._mlbridge_bindings), self._owner())
            self._apply_bound(values)
        return values

    async def async_sync_variables(self) -> dict[str, object]:
        """`sync_variables` for asyncio: reads through an `AsyncSessionContext` (or a
        `SessionContext` in a thread)."""
        values = await _aread(self._mlbridge_ctx, dict(self._mlbridge_bindings), self._owner())
        with self._mlbridge_lock:
            self._apply_bound(values)
        return values

    def _apply_bound(self, values: Mapping[str, object]) -> None:
        if not values:
            return
        apply = None
        if self.IMPLEMENTATION:
            apply = getattr(importlib.import_module(self.IMPLEMENTATION), "apply_bindings", None)
        if callable(apply):
            apply(self, values)
            return
        keywords = {self.BINDABLE[name]: value for name, value in values.items()}
        set_params = getattr(self, "set_params", None)
        if callable(set_params):
            set_params(**keywords)
        else:
            for keyword, value in keywords.items():
                setattr(self, keyword, value)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Syncs the bound variables, then runs the framework's ``forward``."""
        self.sync_variables()
        return cast(Any, super()).forward(*args, **kwargs)

    async def aforward(self, *args: Any, **kwargs: Any) -> Any:
        """Syncs the bound variables (without blocking the loop), then runs the
        framework's ``aforward``."""
        await self.async_sync_variables()
        return await cast(Any, super()).aforward(*args, **kwargs)

    def __deepcopy__(self: _Mixin, memo: dict[int, Any]) -> _Mixin:
        cls = type(self)
        copied = cls.__new__(cls)
        memo[id(self)] = copied
        if self._mlbridge_ctx is not None:
            memo[id(self._mlbridge_ctx)] = self._mlbridge_ctx  # copies share the session
        for key, value in self.__dict__.items():
            copied.__dict__[key] = threading.Lock() if key == "_mlbridge_lock" else copy.deepcopy(value, memo)
        return copied

    def __getstate__(self) -> dict[str, Any]:
        parent = getattr(super(), "__getstate__", None)
        state = parent() if callable(parent) else None
        state = dict(state if isinstance(state, dict) else self.__dict__)
        state.pop("_mlbridge_lock", None)
        state["_mlbridge_ctx"] = None  # a session is a live connection
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        parent = getattr(super(), "__setstate__", None)
        if callable(parent):
            parent(state)
        else:
            self.__dict__.update(state)
        self._mlbridge_lock = threading.Lock()


# -- scikit-learn estimators ---------------------------------------------------------------------


class VariableAwareEstimator(Generic[E]):
    """A scikit-learn estimator or pipeline whose hyper-parameters follow session variables.

    ```python
    model = VariableAwareEstimator(LogisticRegression(), ctx, bindings={"C": "reg_strength"})
    model.fit(X, y)      # set_params(C=ctx["reg_strength"]) first
    ```

    `bindings` maps ``set_params`` keywords (validated against
    ``estimator.get_params(deep=True)``, so pipeline keywords like ``svc__C`` work) to
    variable names. A subclass may declare ``BINDABLE`` (manifest name -> keyword) to
    accept manifest names too (``{"c": "C"}``).

    The fitting methods (``fit``, ``partial_fit``, ``fit_transform``, ``fit_predict``)
    sync, then delegate. ``predict``, ``predict_proba``, ``decision_function``, ``score``
    and ``transform`` delegate without syncing: a hyper-parameter changed after fitting
    must not be applied to the fitted model (an SVC's ``kernel`` set after ``fit`` would be
    used with support vectors computed under another one); the change takes effect at the
    next fit. Fitted attributes are on the wrapped estimator: ``model.estimator.coef_``.
    """

    BINDABLE: ClassVar[Mapping[str, str]] = MappingProxyType({})

    estimator: E
    """The wrapped estimator."""

    def __init__(
        self, estimator: E, ctx: SessionLike | None = None, *, bindings: Mapping[str, str] | None = None
    ) -> None:
        if not callable(getattr(estimator, "set_params", None)) or not callable(getattr(estimator, "get_params", None)):
            raise InvalidArgument(
                f"{type(self).__name__} wraps scikit-learn estimators (with get_params/set_params), "
                f"not {type(estimator).__name__}",
                context={"parameter": "estimator"},
            )
        self.estimator = estimator
        self.ctx = ctx
        """The session the bound variables are read from."""
        self._bindings: dict[str, str] = {}
        self._lock = threading.Lock()
        for parameter, variable in (bindings or {}).items():
            self.bind_to_variable(parameter, variable)

    def _owner(self) -> str:
        return f"{type(self).__name__}({type(self.estimator).__name__})"

    @property
    def bindings(self) -> Mapping[str, str]:
        """The bindings, ``set_params`` keyword -> variable name (a read-only copy)."""
        return MappingProxyType(dict(self._bindings))

    def _keyword(self, parameter: str) -> str:
        keyword = self.BINDABLE.get(parameter, parameter)
        known = cast(Mapping[str, Any], cast(Any, self.estimator).get_params(deep=True))
        if keyword not in known:
            accepted = sorted(self.BINDABLE) + sorted(known)
            raise InvalidArgument(
                f"{self._owner()} has no parameter `{parameter}`; set_params takes {_listing(accepted)}",
                context={"parameter": str(parameter)},
            )
        return keyword

    def bind_to_variable(self: _Estimator, parameter: str, variable: str) -> _Estimator:
        """Binds `parameter` (a ``set_params`` keyword, or a ``BINDABLE`` manifest name) to
        the session variable `variable`; returns self."""
        keyword = self._keyword(parameter)
        self._bindings[keyword] = _check_variable(self._owner(), keyword, variable)
        return self

    def unbind(self: _Estimator, parameter: str) -> _Estimator:
        """Removes `parameter`'s binding (if any); the last applied value stays. Returns self."""
        self._bindings.pop(self._keyword(parameter), None)
        return self

    def sync_variables(self) -> dict[str, object]:
        """Reads every bound variable and applies the values with ``set_params``; returns
        them by keyword."""
        with self._lock:
            values = _read(self.ctx, dict(self._bindings), self._owner())
            if values:
                cast(Any, self.estimator).set_params(**values)
        return values

    async def async_sync_variables(self) -> dict[str, object]:
        """`sync_variables` for asyncio (see `VariableAwareMixin.async_sync_variables`)."""
        values = await _aread(self.ctx, dict(self._bindings), self._owner())
        if values:
            with self._lock:
                cast(Any, self.estimator).set_params(**values)
        return values

    def fit(self: _Estimator, X: Any, y: Any = None, **fit_params: Any) -> _Estimator:
        """Syncs, then fits the estimator; returns self."""
        self.sync_variables()
        cast(Any, self.estimator).fit(X, y, **fit_params)
        return self

    async def afit(self: _Estimator, X: Any, y: Any = None, **fit_params: Any) -> _Estimator:
        """Syncs through the session without blocking the loop, then fits (in a thread)."""
        await self.async_sync_variables()
        await asyncio.to_thread(cast(Any, self.estimator).fit, X, y, **fit_params)
        return self

    def partial_fit(self: _Estimator, X: Any, y: Any = None, **fit_params: Any) -> _Estimator:
        """Syncs, then runs the estimator's ``partial_fit``; returns self."""
        self.sync_variables()
        cast(Any, self.estimator).partial_fit(X, y, **fit_params)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """Syncs, then runs the estimator's ``fit_transform``."""
        self.sync_variables()
        return cast(Any, self.estimator).fit_transform(X, y, **fit_params)

    def fit_predict(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """Syncs, then runs the estimator's ``fit_predict``."""
        self.sync_variables()
        return cast(Any, self.estimator).fit_predict(X, y, **fit_params)

    def predict(self, X: Any, **params: Any) -> Any:
        """The fitted estimator's predictions."""
        return cast(Any, self.estimator).predict(X, **params)

    def predict_proba(self, X: Any, **params: Any) -> Any:
        """The fitted estimator's class probabilities."""
        return cast(Any, self.estimator).predict_proba(X, **params)

    def decision_function(self, X: Any, **params: Any) -> Any:
        """The fitted estimator's decision function."""
        return cast(Any, self.estimator).decision_function(X, **params)

    def score(self, X: Any, y: Any = None, **params: Any) -> float:
        """The fitted estimator's score (e.g. mean accuracy) on `X`, `y`."""
        return float(cast(Any, self.estimator).score(X, y, **params))

    def transform(self, X: Any, **params: Any) -> Any:
        """The fitted estimator's transform of `X`."""
        return cast(Any, self.estimator).transform(X, **params)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.estimator!r}, bindings={dict(self._bindings)!r})"

    def __deepcopy__(self: _Estimator, memo: dict[int, Any]) -> _Estimator:
        cls = type(self)
        copied = cls.__new__(cls)
        memo[id(self)] = copied
        if self.ctx is not None:
            memo[id(self.ctx)] = self.ctx
        for key, value in self.__dict__.items():
            copied.__dict__[key] = threading.Lock() if key == "_lock" else copy.deepcopy(value, memo)
        return copied

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["ctx"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


# -- tools ---------------------------------------------------------------------------------------


class VariableAwareProxyTool:
    """A tool whose arguments can come from session variables.

    ```python
    add = VariableAwareProxyTool(ctx.tools.add, ctx, bindings={"b": "offset"})
    add(a=1.0)          # ctx.tools.add(a=1.0, b=ctx["offset"])
    add(a=1.0, b=5.0)   # explicit arguments win: b=5.0
    ```

    Wraps an `mlbridge.Tool` (from ``ctx.tools``) or any Python callable. The wrapper keeps
    the tool's ``__name__``, ``__doc__`` and signature (bound arguments show a
    `BoundVariable` default); ``stream(...)`` does the same for streaming tools.
    """

    def __init__(
        self,
        tool: Callable[..., Any],
        ctx: SessionLike | None = None,
        *,
        bindings: Mapping[str, str] | None = None,
    ) -> None:
        if not callable(tool):
            raise InvalidArgument(
                f"VariableAwareProxyTool wraps a callable, not {type(tool).__name__}",
                context={"parameter": "tool"},
            )
        self.tool = tool
        """The wrapped tool."""
        self.ctx = ctx
        """The session the bound variables are read from."""
        self._bindings: dict[str, str] = {}
        self._tool_signature = _signature(tool)
        self.__name__: str = str(getattr(tool, "__name__", type(tool).__name__))
        self.__qualname__: str = str(getattr(tool, "__qualname__", self.__name__))
        self.__doc__ = getattr(tool, "__doc__", None)
        self.__signature__: inspect.Signature | None = self._tool_signature
        for argument, variable in (bindings or {}).items():
            self.bind_to_variable(argument, variable)

    @property
    def bindings(self) -> Mapping[str, str]:
        """The bindings, argument -> variable name (a read-only copy)."""
        return MappingProxyType(dict(self._bindings))

    def _owner(self) -> str:
        return f"tool `{self.__name__}`"

    def _check_argument(self, argument: str) -> str:
        signature = self._tool_signature
        if signature is None:
            return argument
        parameters = signature.parameters
        target = parameters.get(argument)
        if target is None:
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
                return argument
            takes = [p.name for p in parameters.values() if p.kind not in _NOT_BY_NAME]
            raise InvalidArgument(
                f"{self._owner()} has no argument `{argument}` (it takes: {_listing(takes)})",
                context={"parameter": str(argument), "tool": self.__name__},
            )
        if target.kind in _NOT_BY_NAME:
            raise InvalidArgument(
                f"{self._owner()} cannot take `{argument}` by name, so it cannot be bound",
                context={"parameter": argument, "tool": self.__name__},
            )
        return argument

    def bind_to_variable(self: _ProxyTool, argument: str, variable: str) -> _ProxyTool:
        """Binds `argument` to the session variable `variable`; returns self."""
        name = self._check_argument(argument)
        self._bindings[name] = _check_variable(self._owner(), name, variable)
        self._refresh_signature()
        return self

    def unbind(self: _ProxyTool, argument: str) -> _ProxyTool:
        """Removes `argument`'s binding (if any); returns self."""
        self._bindings.pop(argument, None)
        self._refresh_signature()
        return self

    def _refresh_signature(self) -> None:
        signature = self._tool_signature
        if signature is None:
            return
        parameters = [
            p.replace(default=BoundVariable(self._bindings[p.name])) if p.name in self._bindings else p
            for p in signature.parameters.values()
        ]
        try:
            self.__signature__ = signature.replace(parameters=parameters)
        except ValueError:  # a bound positional parameter ahead of unbound ones
            self.__signature__ = signature

    def sync_variables(self) -> dict[str, object]:
        """Reads every bound variable; returns the values by argument."""
        return _read(self.ctx, self._bindings, self._owner())

    def _explicit(self, args: tuple[Any, ...], arguments: Mapping[str, Any]) -> set[str]:
        given = set(arguments)
        if args and self._tool_signature is not None:
            try:
                given |= set(self._tool_signature.bind_partial(*args).arguments)
            except TypeError:
                pass  # the tool reports its own argument errors
        return given

    def _missing(self, args: tuple[Any, ...], arguments: Mapping[str, Any]) -> dict[str, str]:
        given = self._explicit(args, arguments)
        return {argument: variable for argument, variable in self._bindings.items() if argument not in given}

    def __call__(self, *args: Any, **arguments: Any) -> Any:
        """Calls the tool with the bound variables' values for the arguments not given."""
        injected = _read(self.ctx, self._missing(args, arguments), self._owner())
        return self.tool(*args, **{**injected, **arguments})

    async def acall(self, *args: Any, **arguments: Any) -> Any:
        """`__call__` for asyncio: reads without blocking the loop and awaits the tool's
        result if it is awaitable (as with an `AsyncTool`)."""
        injected = await _aread(self.ctx, self._missing(args, arguments), self._owner())
        result = self.tool(*args, **{**injected, **arguments})
        if inspect.isawaitable(result):
            return await result
        return result

    def stream(self, *args: Any, **arguments: Any) -> Any:
        """Calls the tool's ``stream`` (streaming engine tools) with the bound variables'
        values for the arguments not given."""
        stream = getattr(self.tool, "stream", None)
        if not callable(stream):
            raise InvalidArgument(f"{self._owner()} does not stream", context={"tool": self.__name__})
        injected = _read(self.ctx, self._missing(args, arguments), self._owner())
        return stream(*args, **{**injected, **arguments})

    def __repr__(self) -> str:
        signature = self.__signature__ or "(...)"
        return f"<VariableAwareProxyTool {self.__name__}{signature} bindings={dict(self._bindings)!r}>"


_NOT_BY_NAME = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _signature(tool: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(tool)
    except (TypeError, ValueError):
        return None
