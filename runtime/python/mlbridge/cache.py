"""The client-side variable cache: recent variable states with a TTL, kept coherent by the
session's change sequence numbers and invalidated by a background watch.

Every state the cache learns comes with the session sequence it reflects (a write's
sequence, a read's snapshot sequence, a watch update's sequence); a state older than one
already seen for that name is ignored, so a slow read can never overwrite a newer watch
update. Type and constraints ("schema") are kept apart from values: they only change
when a variable is deleted and registered again, so they outlive value expiry.

Thread-safe; used from the caller's threads and the watch thread (or task).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlbridge_proto import ml_bridge_pb2 as pb

from . import telemetry
from .values import from_value

__all__ = ["Schema", "VariableCache"]

_SET_KINDS = frozenset(
    {
        pb.VARIABLE_UPDATE_KIND_INITIAL,
        pb.VARIABLE_UPDATE_KIND_SET,
        pb.VARIABLE_UPDATE_KIND_ROLLED_BACK,
        pb.VARIABLE_UPDATE_KIND_REGISTERED,
    }
)


@dataclass(frozen=True)
class Schema:
    """A variable's declared type and constraints (the type guides value conversion)."""

    type: int
    constraints: pb.Constraints


# The Python types of the values `_Entry.plain` keeps: immutable, so one object can be
# handed to every reader.
_PLAIN_CASES = frozenset({"null_value", "bool_value", "int_value", "float_value", "string_value", "bytes_value"})

MISSING: Any = object()
"""What `VariableCache.plain_value` answers when it has no plain value to give."""


@dataclass
class _Entry:
    variable: pb.Variable
    sequence: int
    stored_at: float
    # Copied out of `variable` once, so that a cached read touches no protobuf field.
    optimizing: bool = False
    plain: Any = MISSING

    @staticmethod
    def of(variable: pb.Variable, sequence: int, stored_at: float) -> _Entry:
        case = variable.value.WhichOneof("kind") if variable.HasField("value") else None
        plain = from_value(variable.value) if case in _PLAIN_CASES else MISSING
        return _Entry(variable, sequence, stored_at, variable.optimizing, plain)


class VariableCache:
    """Variable states by name (see the module docs).

    Args:
        enabled: serve reads from the cache at all.
        ttl: seconds a state may be served without a watch invalidation (None: forever).
        watched: a background watch keeps the cache coherent; reads are served only while
            that watch is live (between its SYNCED marker and its end).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        enabled: bool,
        ttl: float | None,
        watched: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.ttl = ttl
        self.watched = watched
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._schemas: dict[str, Schema] = {}
        self._seen: dict[str, int] = {}
        # Name -> the last sequence whose state of it is stale (dropped for a lock change).
        self._stale: dict[str, int] = {}
        self._live = False
        self._watch_sequence = 0

    @property
    def live(self) -> bool:
        """Whether the background watch is currently live."""
        return self._live

    @property
    def watch_sequence(self) -> int:
        """The highest sequence the background watch has processed."""
        return self._watch_sequence

    def lookup(self, name: str) -> pb.Variable | None:
        """A fresh cached state of `name`, or None (counted as a hit or a miss)."""
        if not self.enabled:
            return None
        found = self._lookup(name)
        telemetry.cache_lookup(found is not None)
        return found.variable if found is not None else None

    def plain_value(self, name: str) -> Any:
        """The fresh cached value of `name` when it is a scalar (None, bool, int, float,
        str, bytes), already decoded: the fast path of a cached read. Else `MISSING`
        (and nothing is counted: the caller's `lookup` counts the hit or miss)."""
        if not self.enabled:
            return MISSING
        entry = self._lookup(name)
        if entry is None or entry.plain is MISSING:
            return MISSING
        telemetry.cache_lookup(True)
        return entry.plain

    def _lookup(self, name: str) -> _Entry | None:
        if self.watched and not self._live:
            return None
        with self._lock:
            entry = self._entries.get(name)
            if entry is None:
                return None
            if self.ttl is not None and self._clock() - entry.stored_at > self.ttl:
                del self._entries[name]
                return None
            if entry.optimizing:
                # A lock's lease can end with no update to say so: ask the engine.
                return None
            return entry

    def schema(self, name: str) -> Schema | None:
        """The known type and constraints of `name`, or None."""
        with self._lock:
            return self._schemas.get(name)

    def store(self, variable: pb.Variable, sequence: int) -> None:
        """Records `variable` as its state at `sequence` (ignored if something newer is known)."""
        with self._lock:
            self._store(variable, sequence)

    def _store(self, variable: pb.Variable, sequence: int) -> None:
        name = variable.name
        if sequence < self._seen.get(name, 0) or sequence <= self._stale.get(name, -1):
            return
        self._seen[name] = sequence
        self._schemas[name] = Schema(variable.type, variable.constraints)
        if self.enabled:
            previous = self._entries.get(name)
            self._entries[name] = _Entry.of(variable, sequence, self._clock())
            if previous is None or previous.variable.version != variable.version:
                self._drop_dependents(name)

    def forget(self, name: str, sequence: int | None = None) -> None:
        """Drops `name` (deleted at `sequence`, or just unknown now)."""
        with self._lock:
            self._forget(name, sequence)

    def _forget(self, name: str, sequence: int | None) -> None:
        if sequence is not None:
            if sequence < self._seen.get(name, 0):
                return
            self._seen[name] = sequence
        self._entries.pop(name, None)
        self._schemas.pop(name, None)

    def invalidate(self, name: str, sequence: int) -> None:
        """Drops the value of `name`, which changed at `sequence` (its schema stays), and of
        the cached variables that depend on it: the engine recomputed the derived ones in
        the same step."""
        with self._lock:
            if sequence < self._seen.get(name, 0):
                return
            self._seen[name] = sequence
            self._entries.pop(name, None)
            self._drop_dependents(name)

    def _drop_dependents(self, name: str) -> None:
        """Drops the cached variables that depend on `name`, directly or not: a change of
        `name` recomputed the derived ones in the same step."""
        changed = [name]
        while changed:
            input_name = changed.pop()
            for other, entry in list(self._entries.items()):
                if input_name in entry.variable.depends_on:
                    del self._entries[other]
                    changed.append(other)

    def drop_value(self, name: str) -> None:
        """Drops the cached state of `name` without a sequence: its optimization lock was
        taken or released, which changes `optimizing` but is no versioned change."""
        with self._lock:
            self._entries.pop(name, None)
            # A background update of the state before the lock change (the watch may lag
            # behind this client's own calls) must not bring the dropped state back.
            self._stale[name] = self._seen.get(name, 0)

    def apply(self, update: pb.VariableUpdate) -> None:
        """Applies one update of the background watch."""
        with self._lock:
            if update.kind == pb.VARIABLE_UPDATE_KIND_SYNCED:
                return
            if update.kind in _SET_KINDS and update.HasField("variable"):
                self._store(update.variable, update.sequence)
            else:
                self._forget(update.variable_name, update.sequence)
            self._watch_sequence = max(self._watch_sequence, update.sequence)

    def synced(self, sequence: int, *, replayed: bool) -> None:
        """The background watch is live at `sequence`. Without a replay (a fresh subscription),
        changes up to `sequence` were never seen, so older states are dropped."""
        with self._lock:
            if not replayed:
                for name in [n for n, e in self._entries.items() if e.sequence < sequence]:
                    del self._entries[name]
            self._watch_sequence = max(self._watch_sequence, sequence)
            self._live = True

    def watch_lost(self) -> None:
        """The background watch ended; reads bypass the cache until it is live again."""
        self._live = False

    def clear(self) -> None:
        """Drops every state (schemas included)."""
        with self._lock:
            self._entries.clear()
            self._schemas.clear()
            self._seen.clear()
            self._stale.clear()
