"""Optimization locks: ``with ctx.optimization(["temperature"], optimizer_id="tune-1") as lock:``.

Entering the block acquires an exclusive, leased lock on the variables (all or nothing; a
variable held by another optimizer raises `VariableLocked` naming the holder and when its
lease ends). While the block runs the lease is renewed in the background (a thread for
`SessionContext`, a task for `AsyncSessionContext`), and writes to the locked variables go
through the lock, which carries its token (``lock.set(name, value)``); writes without the
token are refused by the engine. Leaving the block stops the lock: the values queued with
``lock.final_values[name] = value`` are written atomically first (not if the block raised).

The calls are written once, in `_AsyncLockCalls`; `cargo xtask codegen` derives the blocking
`_LockCalls`. Only the background renewal is written twice.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING

from mlbridge_proto import ml_bridge_pb2 as pb

from .errors import BridgeError, ErrorKind, error_for
from .snapshots import Variable, WriteResult, timestamp

if TYPE_CHECKING:
    from .aio import AsyncSessionContext
    from .session import SessionContext

__all__ = ["AsyncOptimizationLock", "OptimizationLock", "DEFAULT_LEASE"]

DEFAULT_LEASE = 60.0
"""Seconds a lock lasts without renewal unless the caller names a lease (the engine's own
default)."""


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def conflict_error(optimizer_id: str, conflicts: Iterable[pb.LockConflict]) -> BridgeError:
    """The `VariableLocked` error for a refused acquisition: the first contended variable's
    holder and lease end in message and context, every conflict in ``context["conflicts"]``."""
    found = list(conflicts)
    if not found:
        return error_for(ErrorKind.INTERNAL, "StartOptimization refused the lock without a conflict")
    first = found[0]
    expires_at = timestamp(first.expires_at).isoformat() if first.HasField("expires_at") else ""
    return error_for(
        ErrorKind.VARIABLE_LOCKED,
        f"optimizer `{optimizer_id}` cannot lock variable `{first.variable_name}`: it is locked by "
        f"optimizer `{first.optimizer_id}` until {expires_at} unless renewed",
        variable=first.variable_name,
        optimizer_id=first.optimizer_id,
        expires_at=expires_at,
        conflicts=",".join(f"{c.variable_name}={c.optimizer_id}" for c in found),
    )


class _LockState:
    """What both twins hold: the request, the token once granted, the queued final values."""

    def __init__(
        self,
        variables: Iterable[str] | str,
        optimizer_id: str,
        lease: float | timedelta,
        renew_every: float | timedelta | None,
    ) -> None:
        self.variables: list[str] = [variables] if isinstance(variables, str) else list(variables)
        """The locked variables."""
        self.optimizer_id = optimizer_id
        """Who holds the lock (shown in `Variable.optimizer_id`; writes record
        ``optimizer:<id>`` as their source)."""
        self.lease = _seconds(lease)
        """Seconds the lock lasts without renewal."""
        self.renew_every = _seconds(renew_every) if renew_every is not None else self.lease / 3
        """Seconds between background renewals."""
        self.token = ""
        """The opaque lock token (empty until acquired)."""
        self.expires_at: datetime | None = None
        """When the lease ends unless renewed, as of the last acquisition or renewal."""
        self.final_values: dict[str, object] = {}
        """Values written atomically when the block ends normally (or passed to `stop`)."""
        self.renewal_error: BridgeError | None = None
        """Why the background renewal stopped, if it failed (e.g. `LockNotHeld` once the
        lease was lost); later writes through the lock then fail too."""
        self.stopped = False
        """Whether the lock was released by `stop`."""

    @property
    def source(self) -> str:
        """The source recorded on writes through the lock."""
        return f"optimizer:{self.optimizer_id}"

    def _lease_proto(self) -> pb.StartOptimizationRequest:
        request = pb.StartOptimizationRequest(optimizer_id=self.optimizer_id)
        request.lease.FromTimedelta(timedelta(seconds=self.lease))
        return request


# unasync: begin AsyncOptimizationLock
class _AsyncLockCalls(_LockState):
    """The calls of an optimization lock of an `AsyncSessionContext`."""

    def __init__(
        self,
        context: AsyncSessionContext,
        variables: Iterable[str] | str,
        optimizer_id: str,
        *,
        lease: float | timedelta = DEFAULT_LEASE,
        renew_every: float | timedelta | None = None,
    ) -> None:
        super().__init__(variables, optimizer_id, lease, renew_every)
        self._context = context

    def _start_renewal(self) -> None:
        raise NotImplementedError

    async def _stop_renewal(self) -> None:
        raise NotImplementedError

    def _refresh_cache(self) -> None:
        # Taking or releasing a lock changes `optimizing` without a versioned change.
        for name in self.variables:
            self._context._core.cache.drop_value(name)

    async def start(self) -> None:
        """Acquires the lock (all variables or none) and starts the background renewal.

        Raises `VariableLocked` (naming the holder and when its lease ends) if another
        optimizer holds one of the variables; `VariableNotFound`, `InvalidArgument`.
        """
        request = self._lease_proto()
        request.session_id = self._context.session_id
        request.variable_names.extend(self.variables)
        response = await self._context._invoke(self._context._open_stub().StartOptimization, request)
        if not response.granted:
            raise conflict_error(self.optimizer_id, response.conflicts)
        self.token = response.lock_token
        self.expires_at = timestamp(response.expires_at)
        self._refresh_cache()
        self._start_renewal()

    async def renew(self) -> datetime:
        """Extends the lease by `lease` seconds from now; returns the new end. Raises
        `LockNotHeld` once the lock expired or was stopped."""
        request = self._lease_proto()
        request.session_id = self._context.session_id
        request.renew_token = self.token
        response = await self._context._invoke(self._context._open_stub().StartOptimization, request)
        self.expires_at = timestamp(response.expires_at)
        return self.expires_at

    async def set(self, name: str, value: object, *, metadata: Mapping[str, str] | None = None) -> Variable:
        """Writes a locked variable with the lock's token (source ``optimizer:<id>``)."""
        core = self._context._core
        request = core.set_request(name, self._context._converted(name, value), None, metadata)
        request.source = self.source
        request.lock_token = self.token
        response = await self._context._invoke(self._context._open_stub().SetVariable, request)
        core.cache.store(response.variable, response.sequence)
        return core.variable(response.variable)

    async def set_variables(
        self, values: Mapping[str, object], atomic: bool = True, *, metadata: Mapping[str, str] | None = None
    ) -> list[WriteResult]:
        """Writes several locked variables with the token in one SetVariables (see
        `set_variables` of the context). A variable the lock does not cover fails the whole
        call with `LockNotHeld`."""
        if not values:
            return []
        core = self._context._core
        schemas = {name: core.cache.schema(name) for name in values}
        writes, failed = core.batch_writes(values, schemas, {}, atomic)
        response = None
        if writes:
            request = core.batch_request(writes, atomic, metadata)
            request.source = self.source
            request.lock_token = self.token
            response = await self._context._invoke(self._context._open_stub().SetVariables, request)
        return core.batch_results(response, failed, atomic)

    async def rollback(self, name: str, version: int, *, metadata: Mapping[str, str] | None = None) -> Variable:
        """Restores an earlier `version` of a locked variable as a new version, with the token."""
        core = self._context._core
        request = core.rollback_request(name, version, None, metadata)
        request.source = self.source
        request.lock_token = self.token
        response = await self._context._invoke(self._context._open_stub().RollbackVariable, request)
        core.cache.store(response.variable, response.sequence)
        return core.variable(response.variable)

    async def stop(
        self, final_values: Mapping[str, object] | None = None, *, metadata: Mapping[str, str] | None = None
    ) -> list[Variable]:
        """Stops the background renewal, writes `final_values` (default: the queued
        `final_values`) atomically and releases the lock; returns the written variables.

        On failure (`TypeMismatch`, `ConstraintViolation`, `InvalidArgument` for a variable
        the lock does not cover, `LockNotHeld`) nothing is written and the lock, if still
        live, stays held until the end of its lease or another `stop` (the end of a
        ``with`` block releases it without the refused values, then raises).
        """
        await self._stop_renewal()
        core = self._context._core
        values = self.final_values if final_values is None else final_values
        request = pb.StopOptimizationRequest(
            session_id=self._context.session_id,
            lock_token=self.token,
            source=self.source,
            metadata=metadata or {},
        )
        for name, value in values.items():
            request.final_values[name].CopyFrom(self._context._converted(name, value))
        response = await self._context._invoke(self._context._open_stub().StopOptimization, request)
        self.stopped = True
        self._refresh_cache()
        return [core.variable(variable) for variable in response.variables]

    async def __aenter__(self) -> _AsyncLockCalls:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.stopped:
            await self._stop_renewal()
            return
        try:
            await self.stop(None if error is None else {})
        except BridgeError as refused:
            if refused.kind != ErrorKind.LOCK_NOT_HELD:
                # The final values were refused (nothing was written): release without
                # them rather than hold the variables to the end of the lease.
                try:
                    await self.stop({})
                except BridgeError:
                    pass
            # The block's own exception matters more than a failed stop.
            if error is None:
                raise
# unasync: end


# @generated by `cargo xtask codegen` from `runtime/python/mlbridge/optimization.py` (unasync of AsyncOptimizationLock); do not edit
class _LockCalls(_LockState):
    """The calls of an optimization lock of an `SessionContext`."""

    def __init__(
        self,
        context: SessionContext,
        variables: Iterable[str] | str,
        optimizer_id: str,
        *,
        lease: float | timedelta = DEFAULT_LEASE,
        renew_every: float | timedelta | None = None,
    ) -> None:
        super().__init__(variables, optimizer_id, lease, renew_every)
        self._context = context

    def _start_renewal(self) -> None:
        raise NotImplementedError

    def _stop_renewal(self) -> None:
        raise NotImplementedError

    def _refresh_cache(self) -> None:
        # Taking or releasing a lock changes `optimizing` without a versioned change.
        for name in self.variables:
            self._context._core.cache.drop_value(name)

    def start(self) -> None:
        """Acquires the lock (all variables or none) and starts the background renewal.

        Raises `VariableLocked` (naming the holder and when its lease ends) if another
        optimizer holds one of the variables; `VariableNotFound`, `InvalidArgument`.
        """
        request = self._lease_proto()
        request.session_id = self._context.session_id
        request.variable_names.extend(self.variables)
        response = self._context._invoke(self._context._open_stub().StartOptimization, request)
        if not response.granted:
            raise conflict_error(self.optimizer_id, response.conflicts)
        self.token = response.lock_token
        self.expires_at = timestamp(response.expires_at)
        self._refresh_cache()
        self._start_renewal()

    def renew(self) -> datetime:
        """Extends the lease by `lease` seconds from now; returns the new end. Raises
        `LockNotHeld` once the lock expired or was stopped."""
        request = self._lease_proto()
        request.session_id = self._context.session_id
        request.renew_token = self.token
        response = self._context._invoke(self._context._open_stub().StartOptimization, request)
        self.expires_at = timestamp(response.expires_at)
        return self.expires_at

    def set(self, name: str, value: object, *, metadata: Mapping[str, str] | None = None) -> Variable:
        """Writes a locked variable with the lock's token (source ``optimizer:<id>``)."""
        core = self._context._core
        request = core.set_request(name, self._context._converted(name, value), None, metadata)
        request.source = self.source
        request.lock_token = self.token
        response = self._context._invoke(self._context._open_stub().SetVariable, request)
        core.cache.store(response.variable, response.sequence)
        return core.variable(response.variable)

    def set_variables(
        self, values: Mapping[str, object], atomic: bool = True, *, metadata: Mapping[str, str] | None = None
    ) -> list[WriteResult]:
        """Writes several locked variables with the token in one SetVariables (see
        `set_variables` of the context). A variable the lock does not cover fails the whole
        call with `LockNotHeld`."""
        if not values:
            return []
        core = self._context._core
        schemas = {name: core.cache.schema(name) for name in values}
        writes, failed = core.batch_writes(values, schemas, {}, atomic)
        response = None
        if writes:
            request = core.batch_request(writes, atomic, metadata)
            request.source = self.source
            request.lock_token = self.token
            response = self._context._invoke(self._context._open_stub().SetVariables, request)
        return core.batch_results(response, failed, atomic)

    def rollback(self, name: str, version: int, *, metadata: Mapping[str, str] | None = None) -> Variable:
        """Restores an earlier `version` of a locked variable as a new version, with the token."""
        core = self._context._core
        request = core.rollback_request(name, version, None, metadata)
        request.source = self.source
        request.lock_token = self.token
        response = self._context._invoke(self._context._open_stub().RollbackVariable, request)
        core.cache.store(response.variable, response.sequence)
        return core.variable(response.variable)

    def stop(
        self, final_values: Mapping[str, object] | None = None, *, metadata: Mapping[str, str] | None = None
    ) -> list[Variable]:
        """Stops the background renewal, writes `final_values` (default: the queued
        `final_values`) atomically and releases the lock; returns the written variables.

        On failure (`TypeMismatch`, `ConstraintViolation`, `InvalidArgument` for a variable
        the lock does not cover, `LockNotHeld`) nothing is written and the lock, if still
        live, stays held until the end of its lease or another `stop` (the end of a
        ``with`` block releases it without the refused values, then raises).
        """
        self._stop_renewal()
        core = self._context._core
        values = self.final_values if final_values is None else final_values
        request = pb.StopOptimizationRequest(
            session_id=self._context.session_id,
            lock_token=self.token,
            source=self.source,
            metadata=metadata or {},
        )
        for name, value in values.items():
            request.final_values[name].CopyFrom(self._context._converted(name, value))
        response = self._context._invoke(self._context._open_stub().StopOptimization, request)
        self.stopped = True
        self._refresh_cache()
        return [core.variable(variable) for variable in response.variables]

    def __enter__(self) -> _LockCalls:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.stopped:
            self._stop_renewal()
            return
        try:
            self.stop(None if error is None else {})
        except BridgeError as refused:
            if refused.kind != ErrorKind.LOCK_NOT_HELD:
                # The final values were refused (nothing was written): release without
                # them rather than hold the variables to the end of the lease.
                try:
                    self.stop({})
                except BridgeError:
                    pass
            # The block's own exception matters more than a failed stop.
            if error is None:
                raise
# @generated end


class AsyncOptimizationLock(_AsyncLockCalls):
    """An optimization lock of an `AsyncSessionContext`, renewed by a task on the running
    loop while held (``async with ctx.optimization([...], optimizer_id="tune-1") as lock:``)."""

    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsyncOptimizationLock:
        await self.start()
        return self

    def _start_renewal(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_every)
            try:
                await self.renew()
            except BridgeError as error:
                self.renewal_error = error
                return
            except RuntimeError:
                return  # the context was closed

    async def _stop_renewal(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


class OptimizationLock(_LockCalls):
    """An optimization lock of a `SessionContext`, renewed by a background thread while
    held (``with ctx.optimization([...], optimizer_id="tune-1") as lock:``)."""

    _thread: threading.Thread | None = None
    _stopping: threading.Event | None = None

    def __enter__(self) -> OptimizationLock:
        self.start()
        return self

    def _start_renewal(self) -> None:
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._renew_forever, args=(self._stopping,), name=f"mlbridge-lock-{self.optimizer_id}", daemon=True
        )
        self._thread.start()

    def _renew_forever(self, stopping: threading.Event) -> None:
        while not stopping.wait(self.renew_every):
            try:
                self.renew()
            except BridgeError as error:
                self.renewal_error = error
                return
            except RuntimeError:
                return  # the context was closed

    def _stop_renewal(self) -> None:
        thread, self._thread = self._thread, None
        if self._stopping is not None:
            self._stopping.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
