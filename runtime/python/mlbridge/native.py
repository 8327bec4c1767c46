"""Engine-native resources as Python proxies: optimizers and modules that live in the engine.

An `Optimizer` runs its search loop inside the engine: it holds an optimization lock on the
variables it tunes, writes each candidate through the lock (source ``optimizer:<id>``,
metadata ``{"trial": "<n>"}``, so `history` shows the trials) and scores it by calling a
metric registered by this program (`SessionContext.register_callback`). The search space
comes from the variables' own types and constraints, so nothing is declared twice::

    from mlbridge import SessionContext
    from mlbridge.native import Optimizer

    with SessionContext("127.0.0.1:50051") as ctx:
        ctx.register_variable("x", "float", 0.0, min=-5.0, max=5.0)

        def metric(x: float) -> float:
            return -(x - 1.0) ** 2

        with Optimizer(ctx, "tpe", variables=["x"], metric=metric, seed=7) as optimizer:
            result = optimizer.run(n_trials=50, progress=True)
            print(result.best)

A `Module` wraps a framework operation of the engine's workers with its bindings::

    predict = Module(ctx, "dspy.predict", signature="question -> answer", temperature=bind("temperature"))
    predict(inputs={"question": "2 + 2?"})["outputs"]["answer"]

`AsyncOptimizer` and `AsyncModule` take an `AsyncSessionContext`; their methods are
coroutines (the resource is created by ``await proxy.open()``, by ``async with`` or by
the first call). Failures are data: a trial whose metric raised is FAILED and keeps the
exception's type and traceback in `Trial.error`; it never gets a made-up score.

The calls are written once, in `_AsyncOptimizerCalls` and `_AsyncModuleCalls`; `cargo xtask
codegen` derives the blocking twins. Only progress reporting (a thread or a task watching
the tuned variables) is written twice.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import inspect
import logging
import math
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO, Union

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb

from .callbacks import current_call
from .errors import error_from_rpc
from .snapshots import Binding, Resource, VariableUpdate, bind
from .values import to_value

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .aio import AsyncSessionContext
    from .session import SessionContext

__all__ = [
    "AsyncModule",
    "AsyncOptimizer",
    "Module",
    "Optimizer",
    "Progress",
    "RunResult",
    "Trial",
    "TrialError",
    "TrialState",
    "bind",
    "print_progress",
]


# -- results ---------------------------------------------------------------------------------


class TrialState(str, enum.Enum):
    """How a trial ended (``RUNNING``: asked, not told yet)."""

    COMPLETE = "complete"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    PRUNED = "pruned"
    RUNNING = "running"


@dataclass(frozen=True)
class TrialError:
    """Why a trial failed or timed out: the engine's error kind (e.g. ``CALLBACK_ERROR``,
    ``TIMEOUT``, ``TYPE_MISMATCH``) and, for a metric that raised, the Python exception's
    type, message and traceback."""

    kind: str
    type: str
    message: str
    traceback: str

    @classmethod
    def from_value(cls, data: Mapping[str, Any]) -> TrialError:
        """Decodes the ``error`` map of a trial."""
        return cls(
            kind=str(data.get("kind", "")),
            type=str(data.get("type", "")),
            message=str(data.get("message", "")),
            traceback=str(data.get("traceback", "")),
        )


@dataclass(frozen=True)
class Trial:
    """One evaluated (or asked) candidate.

    Attributes:
        number: the trial number, from 0, in the order candidates were drawn.
        state: how it ended.
        values: the candidate: variable name -> value.
        score: the metric's value (COMPLETE trials only; never made up for a failure).
        error: why it failed or timed out (FAILED / TIMED_OUT only).
        duration_us: time spent evaluating it (all attempts), in microseconds.
        attempts: evaluations made (1 + retries used).
    """

    number: int
    state: TrialState
    values: Mapping[str, Any]
    score: float | None = None
    error: TrialError | None = None
    duration_us: int = 0
    attempts: int = 0

    @property
    def duration(self) -> float:
        """`duration_us` in seconds."""
        return self.duration_us / 1_000_000

    @classmethod
    def from_value(cls, data: Mapping[str, Any]) -> Trial:
        """Decodes a trial map as the engine answers it."""
        score = data.get("score")
        error = data.get("error")
        return cls(
            number=int(data["number"]),
            state=TrialState(str(data.get("state", TrialState.RUNNING.value))),
            values=dict(data.get("values") or {}),
            score=float(score) if score is not None else None,
            error=TrialError.from_value(error) if isinstance(error, Mapping) else None,
            duration_us=int(data.get("duration_us") or 0),
            attempts=int(data.get("attempts") or 0),
        )


@dataclass(frozen=True)
class RunResult:
    """What `Optimizer.run` answers: the best trial and the counts by state.

    Attributes:
        best: the best complete trial (None when none completed).
        trials: trials recorded by this run.
        finished: how the run ended: ``"apply_best"`` (the best values were written) or
            ``"restore"`` (the starting values were written back).
    """

    best: Trial | None
    trials: int
    complete: int
    failed: int
    timed_out: int
    pruned: int
    finished: str

    @classmethod
    def from_value(cls, data: Mapping[str, Any]) -> RunResult:
        """Decodes the map `run` answers."""
        best = data.get("best")
        return cls(
            best=Trial.from_value(best) if isinstance(best, Mapping) else None,
            trials=int(data.get("trials") or 0),
            complete=int(data.get("complete") or 0),
            failed=int(data.get("failed") or 0),
            timed_out=int(data.get("timed_out") or 0),
            pruned=int(data.get("pruned") or 0),
            finished=str(data.get("finished", "")),
        )


# -- progress --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """One step of a running optimizer, as `run(progress=...)` reports it.

    ``event`` is ``"started"`` (the engine wrote trial `number`'s candidate: seen by a
    watch on the tuned variables), ``"scored"`` (the metric returned `score`), ``"failed"``
    (the metric raised `error`, or was cancelled at its deadline) or ``"applied"`` (the run
    wrote the best values). ``"scored"`` and ``"failed"`` come from the metric's own calls,
    so only when the optimizer registered it (`metric` given as a callable).
    """

    event: str
    number: int
    values: Mapping[str, Any] = field(default_factory=dict)
    score: float | None = None
    error: str | None = None


ProgressSink = Callable[[Progress], None]
"""A callable that receives `Progress` events (from a background thread or task)."""


def print_progress(out: TextIO | None = None, *, started: bool = False) -> ProgressSink:
    """A sink printing one line per trial to `out` (default stdout): its number, values and
    score or error. With `started`, also a line when each candidate is written."""

    def sink(event: Progress) -> None:
        if event.event == "started" and not started:
            return
        values = "  ".join(f"{name}={_short(value)}" for name, value in sorted(event.values.items()))
        if event.event == "scored":
            outcome = f"score {event.score:.6g}"
        elif event.event == "failed":
            outcome = f"failed: {event.error}"
        elif event.event == "applied":
            outcome = "applied (best)"
        else:
            outcome = "started"
        label = "best" if event.event == "applied" else f"trial {event.number:>3}"
        print(f"  {label}  {values}  -> {outcome}", file=out or sys.stdout, flush=True)

    return sink


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value) if isinstance(value, str) else str(value)


class _Tracker:
    """Turns the tuned variables' changes and the metric's calls into `Progress` events.

    The engine writes all variables of a candidate, one update each; a trial is "started"
    once every tuned variable was written for it (or a later trial's write arrives).
    """

    def __init__(self, optimizer_id: str, variables: Sequence[str], sink: ProgressSink) -> None:
        self._source = f"optimizer:{optimizer_id}"
        self._variables = set(variables)
        self._sink = sink
        self._lock = threading.Lock()
        self._pending: dict[int, dict[str, Any]] = {}
        self._applied: dict[str, Any] = {}
        self.seen: dict[str, int] = {}
        """The highest version seen per variable."""

    def update(self, update: VariableUpdate) -> None:
        """Feeds one watch update."""
        events: list[Progress] = []
        with self._lock:
            self.seen[update.name] = max(self.seen.get(update.name, 0), update.version)
            if update.source != self._source or "trial" not in update.metadata:
                return
            try:
                number = int(update.metadata["trial"])
            except ValueError:
                return
            if update.metadata.get("applied"):
                self._applied[update.name] = update.value
                if set(self._applied) >= self._variables:
                    events.append(Progress("applied", number, dict(self._applied)))
                    self._applied = {}
            else:
                self._pending.setdefault(number, {})[update.name] = update.value
                for earlier in sorted(self._pending):
                    written = self._pending[earlier]
                    if earlier < number or set(written) >= self._variables:
                        events.append(Progress("started", earlier, dict(written)))
                        del self._pending[earlier]
        for event in events:
            self._emit(event)

    def flush(self) -> None:
        """Reports trials whose writes were only partly seen."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for number in sorted(pending):
            self._emit(Progress("started", number, pending[number]))

    def scored(self, event: Progress) -> None:
        """Feeds one metric call's outcome."""
        self._emit(event)

    def _emit(self, event: Progress) -> None:
        try:
            self._sink(event)
        except Exception:  # noqa: BLE001 - a broken sink must not break the run
            _log.exception("the progress sink failed on %s", event)


# -- the metric ------------------------------------------------------------------------------


def _callback_name(fn: Callable[..., Any]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", getattr(fn, "__name__", "metric")).strip("_") or "metric"
    return f"metric.{base[:80]}.{uuid.uuid4().hex[:12]}"


class _Metric:
    """A Python metric as the optimizer registers it: the user's function, wrapped so that
    it also receives the trial number and the candidate (for progress) without the user's
    function having to ask for them."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.tracker: _Tracker | None = None
        signature = inspect.signature(fn)
        self._accepts = {
            p.name
            for p in signature.parameters.values()
            if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        }
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, annotation, default in (("trial", int, -1), ("values", dict, None))
            if name not in self._accepts
        ]
        parameters = [
            p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_POSITIONAL
        ]
        keyword = [p for p in parameters if p.kind == inspect.Parameter.VAR_KEYWORD]
        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in parameters if p not in keyword]
        wrapped = signature.replace(parameters=[*parameters, *extra, *keyword])
        annotations = {**getattr(fn, "__annotations__", {}), **{p.name: p.annotation for p in extra}}

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def call_async(**arguments: Any) -> Any:
                own, trial, values = self._split(arguments)
                try:
                    score = await fn(**own)
                except BaseException as error:
                    self._report(trial, values, None, error)
                    raise
                self._report(trial, values, score, None)
                return score

            self.callable: Callable[..., Any] = call_async
        else:

            @functools.wraps(fn)
            def call(**arguments: Any) -> Any:
                own, trial, values = self._split(arguments)
                try:
                    score = fn(**own)
                except BaseException as error:
                    self._report(trial, values, None, error)
                    raise
                self._report(trial, values, score, None)
                return score

            self.callable = call
        setattr(self.callable, "__signature__", wrapped)  # noqa: B010 - read by inspect.signature
        self.callable.__annotations__ = annotations

    def _split(self, arguments: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, Any]]:
        trial = arguments.get("trial", -1)
        values = arguments.get("values") or {}
        own = {name: value for name, value in arguments.items() if name in self._accepts}
        return own, int(trial) if isinstance(trial, int) else -1, dict(values) if isinstance(values, Mapping) else {}

    def _report(self, trial: int, values: dict[str, Any], score: Any, error: BaseException | None) -> None:
        tracker = self.tracker
        if tracker is None:
            return
        call = current_call()
        if error is None and call is not None and call.cancelled.is_set():
            tracker.scored(Progress("failed", trial, values, error="timed out (the engine cancelled the call)"))
        elif error is None:
            number = score if isinstance(score, (int, float)) and not isinstance(score, bool) else None
            if number is None or not math.isfinite(number):
                tracker.scored(Progress("failed", trial, values, error=f"the metric returned {score!r}"))
            else:
                tracker.scored(Progress("scored", trial, values, score=float(number)))
        elif isinstance(error, asyncio.CancelledError):
            tracker.scored(Progress("failed", trial, values, error="timed out (the engine cancelled the call)"))
        else:
            tracker.scored(Progress("failed", trial, values, error=f"{type(error).__name__}: {error}"))


# -- shared state of the twins ---------------------------------------------------------------

ProgressArgument = Union[bool, ProgressSink, None]
"""`run(progress=...)`: True prints a line per trial; a callable receives `Progress` events."""


class _OptimizerState:
    """What both twins hold: the configuration sent at creation and, once created, the id."""

    def __init__(
        self,
        algorithm: str,
        variables: Sequence[str] | str,
        metric: Callable[..., Any] | str | None,
        seed: int | None,
        direction: str,
        module: Any,
        retries: int,
        stop_on_failure: bool,
        lease: float | None,
        on_finish: str,
        grid_points: int | None,
        startup_trials: int | None,
        metric_timeout: float | None,
        metadata: Mapping[str, str] | None,
    ) -> None:
        self.algorithm = algorithm
        """The search algorithm: ``tpe``, ``random`` or ``grid``."""
        self.variables: list[str] = [variables] if isinstance(variables, str) else list(variables)
        """The tuned variables."""
        self._metric: _Metric | None = _Metric(metric) if callable(metric) else None
        self.metric_name: str | None = (
            _callback_name(metric) if callable(metric) else metric if isinstance(metric, str) else None
        )
        """The name of the metric callback (generated when `metric` was a callable)."""
        self._metric_timeout = metric_timeout
        self._metadata = dict(metadata or {})
        config: dict[str, object] = {
            "variables": list(self.variables),
            "direction": direction,
            "retries": retries,
            "stop_on_failure": stop_on_failure,
            "on_finish": on_finish,
        }
        if self.metric_name is not None:
            config["metric"] = self.metric_name
        if seed is not None:
            config["seed"] = seed
        if module is not None:
            config["module"] = module if isinstance(module, str) else module.id
        if lease is not None:
            config["lease"] = float(lease)
        if grid_points is not None:
            config["grid_points"] = grid_points
        if startup_trials is not None:
            config["startup_trials"] = startup_trials
        self.config = config
        """The configuration sent with CreateResource."""
        self._resource: Resource | None = None
        self._registered = False
        self.released = False
        """Whether `release` ran."""

    @property
    def id(self) -> str:
        """The resource id (also the optimizer's lock id: writes show ``optimizer:<id>``)."""
        if self._resource is None:
            raise RuntimeError("the optimizer is not created yet: call open() (or use `async with`)")
        return self._resource.resource_id

    @property
    def seed(self) -> int:
        """The seed: the one given, else the one the engine drew at creation."""
        if self._resource is None:
            given = self.config.get("seed")
            if isinstance(given, int):
                return given
            raise RuntimeError("the optimizer is not created yet: call open() (or use `async with`)")
        return int(self._resource.metadata.get("seed", str(self.config.get("seed", 0))))

    @property
    def resource(self) -> Resource | None:
        """The engine's description of the resource (None before it is created)."""
        return self._resource

    def _request(self, method: str, arguments: Mapping[str, object]) -> pb.InvokeResourceRequest:
        return pb.InvokeResourceRequest(
            resource_id=self.id,
            method=method,
            arguments={name: to_value(value) for name, value in arguments.items() if value is not None},
        )

    @staticmethod
    def _run_arguments(n_trials: int | None, timeout: float | None, parallel: int) -> dict[str, object]:
        arguments: dict[str, object] = {"parallel": parallel}
        if n_trials is not None:
            arguments["n_trials"] = n_trials
        if timeout is not None:
            arguments["timeout"] = float(timeout)
        return arguments

    def _sink(self, progress: ProgressArgument) -> ProgressSink | None:
        if progress is None or progress is False:
            return None
        if progress is True:
            return print_progress(started=self._metric is None)
        return progress

    @staticmethod
    def _tell_arguments(
        trial: Trial | int, score: float | None, state: TrialState | str | None, error: str | BaseException | None
    ) -> dict[str, object]:
        arguments: dict[str, object] = {"number": trial.number if isinstance(trial, Trial) else int(trial)}
        if score is not None:
            arguments["score"] = float(score)
        if state is not None:
            arguments["state"] = state.value if isinstance(state, TrialState) else str(state)
        if error is not None:
            arguments["error"] = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return arguments


def _trial_or_none(value: Any) -> Trial | None:
    return Trial.from_value(value) if isinstance(value, Mapping) else None


def _versions(value: Any) -> dict[str, int]:
    return {str(name): int(version) for name, version in (value or {}).items()}


# unasync: begin AsyncOptimizer
class _AsyncOptimizerCalls(_OptimizerState):
    """The calls of an engine-native optimizer of an `AsyncSessionContext`."""

    def __init__(
        self,
        context: AsyncSessionContext,
        algorithm: str = "tpe",
        *,
        variables: Sequence[str] | str,
        metric: Callable[..., Any] | str | None = None,
        seed: int | None = None,
        direction: str = "maximize",
        module: AsyncModule | str | None = None,
        retries: int = 1,
        stop_on_failure: bool = False,
        lease: float | None = None,
        on_finish: str = "apply_best",
        grid_points: int | None = None,
        startup_trials: int | None = None,
        metric_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            algorithm,
            variables,
            metric,
            seed,
            direction,
            module,
            retries,
            stop_on_failure,
            lease,
            on_finish,
            grid_points,
            startup_trials,
            metric_timeout,
            metadata,
        )
        self._context = context

    async def open(self) -> _AsyncOptimizerCalls:
        """Registers the metric (when given as a callable) and creates the optimizer in the
        engine (idempotent).

        Raises:
            InvalidArgument (bad configuration: a variable without min/max, an unknown
            algorithm, ...), VariableNotFound, CallbackNotFound (a metric name that is not
            registered).
        """
        if self._resource is not None:
            return self
        if self._metric is not None and not self._registered:
            await self._context.register_callback(
                self._metric.callable, self.metric_name, timeout=self._metric_timeout
            )
            self._registered = True
        try:
            self._resource = await self._context.create_resource(
                "optimizer", self.algorithm, config=self.config, metadata=self._metadata
            )
        except BaseException:
            await self._unregister()
            raise
        return self

    async def _unregister(self) -> None:
        if self._registered and self.metric_name is not None:
            self._registered = False
            try:
                await self._context.unregister_callback(self.metric_name)
            except Exception:  # noqa: BLE001 - the session may be gone already
                pass

    async def _call(self, method: str, arguments: Mapping[str, object], *, wait: bool = False) -> Any:
        await self.open()
        request = self._request(method, arguments)
        request.session_id = self._context.session_id
        timeout = None if wait else self._context._core.options.timeout
        try:
            response = await self._context._open_stub().InvokeResource(request, timeout=timeout)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return self._context._core.decode(response.result) if response.HasField("result") else None

    async def _settle(self) -> None:
        # The engine just wrote the tuned variables: drop this context's cached values up
        # to the session's current sequence, so that a read never answers an older value
        # (the background watch may not have delivered the writes yet).
        cache = self._context._core.cache
        if cache.enabled:
            sequence = (await self._context.get_session()).current_sequence
            for name in self.variables:
                cache.invalidate(name, sequence)

    def _start_progress(self, sink: ProgressSink, since: int) -> None:
        raise NotImplementedError

    async def _stop_progress(self) -> None:
        raise NotImplementedError

    async def run(
        self,
        n_trials: int | None = None,
        *,
        timeout: float | None = None,
        parallel: int = 1,
        progress: ProgressArgument = None,
    ) -> RunResult:
        """Runs the search in the engine and answers when it ends: `n_trials` trials and/or
        `timeout` seconds (neither: 20 trials), `parallel` trials at a time.

        The optimizer holds the lock on its variables while it runs and ends by applying the
        best values or restoring the starting ones (`on_finish`). A failed or timed-out
        metric is retried `retries` times, then recorded and the run continues (unless
        `stop_on_failure`). `progress`: True prints a line per trial; a callable receives
        `Progress` events from a background watch on the variables (and from the metric).

        Raises:
            VariableLocked (another optimizer holds one of the variables, named with its
            lease end), InvalidArgument (no metric; already running), CallbackNotFound.
        """
        await self.open()
        sink = self._sink(progress)
        if sink is not None:
            session = await self._context.get_session()
            self._start_progress(sink, session.current_sequence)
        try:
            result = await self._call("run", self._run_arguments(n_trials, timeout, parallel), wait=True)
        finally:
            if sink is not None:
                await self._stop_progress()
            await self._settle()
        return RunResult.from_value(result)

    async def ask(self) -> Trial:
        """Draws the next candidate and writes it to the variables through the lock
        (acquired on the first ask); answers a RUNNING trial to `tell` about.

        Raises `VariableLocked` when another optimizer holds one of the variables."""
        answer = await self._call("ask", {})
        await self._settle()
        return Trial(number=int(answer["number"]), state=TrialState.RUNNING, values=dict(answer["values"]))

    async def tell(
        self,
        trial: Trial | int,
        score: float | None = None,
        *,
        state: TrialState | str | None = None,
        error: str | BaseException | None = None,
    ) -> Trial:
        """Records the outcome of an asked trial: a `score` (COMPLETE), or a `state`
        (``failed``, ``pruned``) with an optional `error`. Answers the recorded trial.

        Raises `InvalidArgument` for an unknown trial or one already told."""
        return Trial.from_value(await self._call("tell", self._tell_arguments(trial, score, state, error)))

    async def best(self) -> Trial | None:
        """The best complete trial so far (None when none completed)."""
        return _trial_or_none(await self._call("best", {}))

    async def trials(self) -> list[Trial]:
        """Every recorded trial, in number order."""
        return [Trial.from_value(trial) for trial in (await self._call("trials", {}) or [])]

    async def apply_best(self) -> dict[str, int]:
        """Writes the best trial's values to the variables (through the lock while it is
        held); answers the new version of each. Raises `InvalidArgument` when no trial
        completed."""
        versions = _versions(await self._call("apply_best", {}))
        await self._settle()
        return versions

    async def restore(self) -> dict[str, int]:
        """Writes back the values the variables had before the first trial and releases the
        lock; answers the new version of each."""
        versions = _versions(await self._call("restore", {}))
        await self._settle()
        return versions

    async def release(self) -> bool:
        """Releases the optimizer in the engine (with any lock it still holds) and removes
        the metric this proxy registered. Idempotent; answers whether the engine had it."""
        if self.released:
            return False
        self.released = True
        existed = False
        if self._resource is not None:
            existed = await self._context.release_resource(self.id)
            await self._settle()
        await self._unregister()
        return existed

    async def __aenter__(self) -> _AsyncOptimizerCalls:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            await self.release()
        except Exception:
            # The block's own exception matters more than a failed release.
            if error is None:
                raise


class _AsyncModuleCalls:
    """The calls of an engine-native module of an `AsyncSessionContext`."""

    def __init__(self, context: AsyncSessionContext, operation: str, /, **parameters: object) -> None:
        self._context = context
        framework, _, name = operation.rpartition(".")
        self.framework = framework
        """The framework, e.g. ``dspy``."""
        self.operation = name
        """The operation of the framework's manifest, e.g. ``predict``."""
        bindings = {key: value.variable for key, value in parameters.items() if isinstance(value, Binding)}
        config: dict[str, object] = {key: value for key, value in parameters.items() if not isinstance(value, Binding)}
        if bindings:
            config["bind"] = bindings
        self.config = config
        """The configuration sent with CreateResource (literals, and ``bind``:
        parameter -> variable)."""
        self._resource: Resource | None = None
        self.released = False
        """Whether `release` ran."""

    @property
    def id(self) -> str:
        """The resource id (what an optimizer's `module` names)."""
        if self._resource is None:
            raise RuntimeError("the module is not created yet: call open() (or use `async with`)")
        return self._resource.resource_id

    @property
    def resource(self) -> Resource | None:
        """The engine's description of the resource (None before it is created)."""
        return self._resource

    async def open(self) -> _AsyncModuleCalls:
        """Creates the module in the engine (idempotent).

        Raises:
            OperationNotFound (unknown framework or operation), InvalidArgument (an unknown
            parameter, or `bind` on a non-bindable one), TypeMismatch.
        """
        if self._resource is None:
            self._resource = await self._context.create_resource(
                "module", self.operation, framework=self.framework, config=self.config
            )
        return self

    async def _call(self, method: str, arguments: Mapping[str, object]) -> Any:
        await self.open()
        request = pb.InvokeResourceRequest(
            session_id=self._context.session_id,
            resource_id=self.id,
            method=method,
            arguments={name: to_value(value) for name, value in arguments.items()},
        )
        try:
            response = await self._context._open_stub().InvokeResource(request, timeout=self._context._core.options.timeout)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return self._context._core.decode(response.result) if response.HasField("result") else None

    async def forward(self, **arguments: object) -> dict[str, Any]:
        """Runs the operation on a worker with the module's parameters, `arguments`
        overriding them (bound parameters read their variables at dispatch); answers the
        operation's named results, e.g. ``{"outputs": {"answer": ...}}``.

        Raises:
            FrameworkError (with the worker's Python type and traceback), InvalidArgument,
            TypeMismatch, ConstraintViolation, WorkerCrashed, WorkerUnavailable, Timeout.
        """
        result = await self._call("forward", arguments)
        return dict(result or {})

    async def __call__(self, **arguments: object) -> dict[str, Any]:
        """Same as `forward`."""
        return await self.forward(**arguments)

    async def describe(self) -> dict[str, Any]:
        """The module's configuration as the engine holds it: ``framework``,
        ``operation``, ``parameters``, ``bind``."""
        return dict(await self._call("describe", {}) or {})

    async def release(self) -> bool:
        """Releases the module in the engine. Idempotent; answers whether the engine had it."""
        if self.released or self._resource is None:
            self.released = True
            return False
        self.released = True
        return bool(await self._context.release_resource(self.id))

    async def __aenter__(self) -> _AsyncModuleCalls:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            await self.release()
        except Exception:
            if error is None:
                raise
# unasync: end


# @generated by `cargo xtask codegen` from `runtime/python/mlbridge/native.py` (unasync of AsyncOptimizer); do not edit
class _OptimizerCalls(_OptimizerState):
    """The calls of an engine-native optimizer of an `SessionContext`."""

    def __init__(
        self,
        context: SessionContext,
        algorithm: str = "tpe",
        *,
        variables: Sequence[str] | str,
        metric: Callable[..., Any] | str | None = None,
        seed: int | None = None,
        direction: str = "maximize",
        module: Module | str | None = None,
        retries: int = 1,
        stop_on_failure: bool = False,
        lease: float | None = None,
        on_finish: str = "apply_best",
        grid_points: int | None = None,
        startup_trials: int | None = None,
        metric_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            algorithm,
            variables,
            metric,
            seed,
            direction,
            module,
            retries,
            stop_on_failure,
            lease,
            on_finish,
            grid_points,
            startup_trials,
            metric_timeout,
            metadata,
        )
        self._context = context

    def open(self) -> _OptimizerCalls:
        """Registers the metric (when given as a callable) and creates the optimizer in the
        engine (idempotent).

        Raises:
            InvalidArgument (bad configuration: a variable without min/max, an unknown
            algorithm, ...), VariableNotFound, CallbackNotFound (a metric name that is not
            registered).
        """
        if self._resource is not None:
            return self
        if self._metric is not None and not self._registered:
            self._context.register_callback(
                self._metric.callable, self.metric_name, timeout=self._metric_timeout
            )
            self._registered = True
        try:
            self._resource = self._context.create_resource(
                "optimizer", self.algorithm, config=self.config, metadata=self._metadata
            )
        except BaseException:
            self._unregister()
            raise
        return self

    def _unregister(self) -> None:
        if self._registered and self.metric_name is not None:
            self._registered = False
            try:
                self._context.unregister_callback(self.metric_name)
            except Exception:  # noqa: BLE001 - the session may be gone already
                pass

    def _call(self, method: str, arguments: Mapping[str, object], *, wait: bool = False) -> Any:
        self.open()
        request = self._request(method, arguments)
        request.session_id = self._context.session_id
        timeout = None if wait else self._context._core.options.timeout
        try:
            response = self._context._open_stub().InvokeResource(request, timeout=timeout)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return self._context._core.decode(response.result) if response.HasField("result") else None

    def _settle(self) -> None:
        # The engine just wrote the tuned variables: drop this context's cached values up
        # to the session's current sequence, so that a read never answers an older value
        # (the background watch may not have delivered the writes yet).
        cache = self._context._core.cache
        if cache.enabled:
            sequence = (self._context.get_session()).current_sequence
            for name in self.variables:
                cache.invalidate(name, sequence)

    def _start_progress(self, sink: ProgressSink, since: int) -> None:
        raise NotImplementedError

    def _stop_progress(self) -> None:
        raise NotImplementedError

    def run(
        self,
        n_trials: int | None = None,
        *,
        timeout: float | None = None,
        parallel: int = 1,
        progress: ProgressArgument = None,
    ) -> RunResult:
        """Runs the search in the engine and answers when it ends: `n_trials` trials and/or
        `timeout` seconds (neither: 20 trials), `parallel` trials at a time.

        The optimizer holds the lock on its variables while it runs and ends by applying the
        best values or restoring the starting ones (`on_finish`). A failed or timed-out
        metric is retried `retries` times, then recorded and the run continues (unless
        `stop_on_failure`). `progress`: True prints a line per trial; a callable receives
        `Progress` events from a background watch on the variables (and from the metric).

        Raises:
            VariableLocked (another optimizer holds one of the variables, named with its
            lease end), InvalidArgument (no metric; already running), CallbackNotFound.
        """
        self.open()
        sink = self._sink(progress)
        if sink is not None:
            session = self._context.get_session()
            self._start_progress(sink, session.current_sequence)
        try:
            result = self._call("run", self._run_arguments(n_trials, timeout, parallel), wait=True)
        finally:
            if sink is not None:
                self._stop_progress()
            self._settle()
        return RunResult.from_value(result)

    def ask(self) -> Trial:
        """Draws the next candidate and writes it to the variables through the lock
        (acquired on the first ask); answers a RUNNING trial to `tell` about.

        Raises `VariableLocked` when another optimizer holds one of the variables."""
        answer = self._call("ask", {})
        self._settle()
        return Trial(number=int(answer["number"]), state=TrialState.RUNNING, values=dict(answer["values"]))

    def tell(
        self,
        trial: Trial | int,
        score: float | None = None,
        *,
        state: TrialState | str | None = None,
        error: str | BaseException | None = None,
    ) -> Trial:
        """Records the outcome of an asked trial: a `score` (COMPLETE), or a `state`
        (``failed``, ``pruned``) with an optional `error`. Answers the recorded trial.

        Raises `InvalidArgument` for an unknown trial or one already told."""
        return Trial.from_value(self._call("tell", self._tell_arguments(trial, score, state, error)))

    def best(self) -> Trial | None:
        """The best complete trial so far (None when none completed)."""
        return _trial_or_none(self._call("best", {}))

    def trials(self) -> list[Trial]:
        """Every recorded trial, in number order."""
        return [Trial.from_value(trial) for trial in (self._call("trials", {}) or [])]

    def apply_best(self) -> dict[str, int]:
        """Writes the best trial's values to the variables (through the lock while it is
        held); answers the new version of each. Raises `InvalidArgument` when no trial
        completed."""
        versions = _versions(self._call("apply_best", {}))
        self._settle()
        return versions

    def restore(self) -> dict[str, int]:
        """Writes back the values the variables had before the first trial and releases the
        lock; answers the new version of each."""
        versions = _versions(self._call("restore", {}))
        self._settle()
        return versions

    def release(self) -> bool:
        """Releases the optimizer in the engine (with any lock it still holds) and removes
        the metric this proxy registered. Idempotent; answers whether the engine had it."""
        if self.released:
            return False
        self.released = True
        existed = False
        if self._resource is not None:
            existed = self._context.release_resource(self.id)
            self._settle()
        self._unregister()
        return existed

    def __enter__(self) -> _OptimizerCalls:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self.release()
        except Exception:
            # The block's own exception matters more than a failed release.
            if error is None:
                raise


class _ModuleCalls:
    """The calls of an engine-native module of an `SessionContext`."""

    def __init__(self, context: SessionContext, operation: str, /, **parameters: object) -> None:
        self._context = context
        framework, _, name = operation.rpartition(".")
        self.framework = framework
        """The framework, e.g. ``dspy``."""
        self.operation = name
        """The operation of the framework's manifest, e.g. ``predict``."""
        bindings = {key: value.variable for key, value in parameters.items() if isinstance(value, Binding)}
        config: dict[str, object] = {key: value for key, value in parameters.items() if not isinstance(value, Binding)}
        if bindings:
            config["bind"] = bindings
        self.config = config
        """The configuration sent with CreateResource (literals, and ``bind``:
        parameter -> variable)."""
        self._resource: Resource | None = None
        self.released = False
        """Whether `release` ran."""

    @property
    def id(self) -> str:
        """The resource id (what an optimizer's `module` names)."""
        if self._resource is None:
            raise RuntimeError("the module is not created yet: call open() (or use `with`)")
        return self._resource.resource_id

    @property
    def resource(self) -> Resource | None:
        """The engine's description of the resource (None before it is created)."""
        return self._resource

    def open(self) -> _ModuleCalls:
        """Creates the module in the engine (idempotent).

        Raises:
            OperationNotFound (unknown framework or operation), InvalidArgument (an unknown
            parameter, or `bind` on a non-bindable one), TypeMismatch.
        """
        if self._resource is None:
            self._resource = self._context.create_resource(
                "module", self.operation, framework=self.framework, config=self.config
            )
        return self

    def _call(self, method: str, arguments: Mapping[str, object]) -> Any:
        self.open()
        request = pb.InvokeResourceRequest(
            session_id=self._context.session_id,
            resource_id=self.id,
            method=method,
            arguments={name: to_value(value) for name, value in arguments.items()},
        )
        try:
            response = self._context._open_stub().InvokeResource(request, timeout=self._context._core.options.timeout)
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return self._context._core.decode(response.result) if response.HasField("result") else None

    def forward(self, **arguments: object) -> dict[str, Any]:
        """Runs the operation on a worker with the module's parameters, `arguments`
        overriding them (bound parameters read their variables at dispatch); answers the
        operation's named results, e.g. ``{"outputs": {"answer": ...}}``.

        Raises:
            FrameworkError (with the worker's Python type and traceback), InvalidArgument,
            TypeMismatch, ConstraintViolation, WorkerCrashed, WorkerUnavailable, Timeout.
        """
        result = self._call("forward", arguments)
        return dict(result or {})

    def __call__(self, **arguments: object) -> dict[str, Any]:
        """Same as `forward`."""
        return self.forward(**arguments)

    def describe(self) -> dict[str, Any]:
        """The module's configuration as the engine holds it: ``framework``,
        ``operation``, ``parameters``, ``bind``."""
        return dict(self._call("describe", {}) or {})

    def release(self) -> bool:
        """Releases the module in the engine. Idempotent; answers whether the engine had it."""
        if self.released or self._resource is None:
            self.released = True
            return False
        self.released = True
        return bool(self._context.release_resource(self.id))

    def __enter__(self) -> _ModuleCalls:
        return self.open()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            self.release()
        except Exception:
            if error is None:
                raise
# @generated end


_DRAIN_SECONDS = 2.0
"""At most this long, after `run` returns, for the progress watch to deliver the last writes."""


async def _wanted_versions(context: AsyncSessionContext, names: Iterable[str]) -> dict[str, int]:
    variables = await context.list_variables("*")
    wanted = set(names)
    return {variable.name: variable.version for variable in variables if variable.name in wanted}


class AsyncOptimizer(_AsyncOptimizerCalls):
    """An engine-native optimizer of an `AsyncSessionContext` (see the module docs).

    ``AsyncOptimizer(ctx, "tpe", variables=[...], metric=fn, seed=7)`` prepares it;
    ``await optimizer.open()``, ``async with`` or the first call creates it in the engine.
    An ``async def`` metric runs on the context's loop while `run` awaits the engine.
    """

    _task: asyncio.Task[None] | None = None
    _tracker: _Tracker | None = None

    async def __aenter__(self) -> AsyncOptimizer:
        await self.open()
        return self

    def _start_progress(self, sink: ProgressSink, since: int) -> None:
        tracker = _Tracker(self.id, self.variables, sink)
        self._tracker = tracker
        if self._metric is not None:
            self._metric.tracker = tracker
        watch = self._context.watch(self.variables, from_version=since)

        async def follow() -> None:
            try:
                async for update in watch:
                    tracker.update(update)
            except Exception:  # noqa: BLE001 - progress is best effort
                pass
            finally:
                watch.close()

        self._watch = watch
        self._task = asyncio.get_running_loop().create_task(follow())

    async def _stop_progress(self) -> None:
        task, self._task = self._task, None
        tracker, self._tracker = self._tracker, None
        if self._metric is not None:
            self._metric.tracker = None
        if task is None or tracker is None:
            return
        try:
            wanted = await _wanted_versions(self._context, self.variables)
            loop = asyncio.get_running_loop()
            end = loop.time() + _DRAIN_SECONDS
            while not task.done() and loop.time() < end and any(
                tracker.seen.get(name, 0) < version for name, version in wanted.items()
            ):
                await asyncio.sleep(0.01)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass
        finally:
            self._watch.close()
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001
                pass
            tracker.flush()


class Optimizer(_OptimizerCalls):
    """An engine-native optimizer of a `SessionContext`, created in the engine when
    constructed (see the module docs); `release()` or the end of a ``with`` block frees it.

    Args:
        context: the session.
        algorithm: ``tpe`` (default), ``random`` or ``grid``.
        variables: the tuned variables (1 to 32); the search space is their types and
            constraints (FLOAT/INTEGER need min and max; ``metadata={"scale": "log"}`` on a
            variable searches it on a log scale).
        metric: a function (registered for you under a generated name, removed on release)
            or the name of a registered callback. It gets, by parameter name, the candidate
            value of each tuned variable, ``values`` (all of them), ``trial`` (the number)
            and ``outputs`` (the module's results), and returns a number.
        seed: the seed (default: drawn by the engine, see `seed`).
        direction: ``maximize`` (default) or ``minimize``.
        module: a `Module` (or its id) each trial runs first, with the candidate values for
            its parameters bound to tuned variables.
        retries: re-evaluations of a failed or timed-out candidate before it is recorded.
        stop_on_failure: end the run at the first failed trial.
        lease: the lock's lease in seconds (renewed by the engine while it works).
        on_finish: ``apply_best`` (default) or ``restore``: how `run` ends.
        grid_points: points per continuous dimension (``grid``).
        startup_trials: random trials before TPE models (``tpe``).
        metric_timeout: the deadline of each metric call when `metric` is a function (else
            the callback's own); a trial past it is TIMED_OUT.
        metadata: labels of the resource.
    """

    _thread: threading.Thread | None = None
    _tracker: _Tracker | None = None

    def __init__(
        self,
        context: SessionContext,
        algorithm: str = "tpe",
        *,
        variables: Sequence[str] | str,
        metric: Callable[..., Any] | str | None = None,
        seed: int | None = None,
        direction: str = "maximize",
        module: Module | str | None = None,
        retries: int = 1,
        stop_on_failure: bool = False,
        lease: float | None = None,
        on_finish: str = "apply_best",
        grid_points: int | None = None,
        startup_trials: int | None = None,
        metric_timeout: float | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            context,
            algorithm,
            variables=variables,
            metric=metric,
            seed=seed,
            direction=direction,
            module=module,
            retries=retries,
            stop_on_failure=stop_on_failure,
            lease=lease,
            on_finish=on_finish,
            grid_points=grid_points,
            startup_trials=startup_trials,
            metric_timeout=metric_timeout,
            metadata=metadata,
        )
        self.open()

    def __enter__(self) -> Optimizer:
        self.open()
        return self

    def _start_progress(self, sink: ProgressSink, since: int) -> None:
        tracker = _Tracker(self.id, self.variables, sink)
        self._tracker = tracker
        if self._metric is not None:
            self._metric.tracker = tracker
        watch = self._context.watch(self.variables, from_version=since)

        def follow() -> None:
            try:
                for update in watch:
                    tracker.update(update)
            except Exception:  # noqa: BLE001 - progress is best effort
                pass

        self._watch = watch
        self._thread = threading.Thread(target=follow, name=f"mlbridge-progress-{self.id}", daemon=True)
        self._thread.start()

    def _stop_progress(self) -> None:
        thread, self._thread = self._thread, None
        tracker, self._tracker = self._tracker, None
        if self._metric is not None:
            self._metric.tracker = None
        if thread is None or tracker is None:
            return
        try:
            variables = self._context.list_variables("*")
            wanted = {v.name: v.version for v in variables if v.name in set(self.variables)}
            end = time.monotonic() + _DRAIN_SECONDS
            while thread.is_alive() and time.monotonic() < end and any(
                tracker.seen.get(name, 0) < version for name, version in wanted.items()
            ):
                time.sleep(0.01)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass
        finally:
            self._watch.close()
            thread.join()
            tracker.flush()


class AsyncModule(_AsyncModuleCalls):
    """An engine-native module of an `AsyncSessionContext`: a framework operation with its
    parameters and bindings, held by the engine (see `Module`)."""

    async def __aenter__(self) -> AsyncModule:
        await self.open()
        return self


class Module(_ModuleCalls):
    """An engine-native module of a `SessionContext`, created in the engine when
    constructed: ``Module(ctx, "dspy.predict", signature="question -> answer",
    temperature=bind("temperature"))``.

    Keyword arguments are the operation's parameters: literals, or ``bind("variable")`` for
    a bindable parameter (read from the session at each call, or replaced by an
    optimizer's candidate). ``module(inputs={...})`` runs it (`forward`).
    """

    def __init__(self, context: SessionContext, operation: str, /, **parameters: object) -> None:
        super().__init__(context, operation, **parameters)
        self.open()

    def __enter__(self) -> Module:
        return self
