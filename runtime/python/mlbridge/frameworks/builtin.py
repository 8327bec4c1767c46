"""The ``builtin`` adapter (proto/adapters/builtin.toml): operations with no framework
behind them, for health checks, tests and benchmarks."""

from __future__ import annotations

import os
import time

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..dispatch import Call, RemoteCallback

__all__ = ["apply", "echo", "noop", "read_variables", "sleep", "worker_pid"]


def noop(call: Call) -> dict[str, object]:
    """Does nothing and returns nothing: the floor of a framework-operation round trip."""
    return {}


def echo(call: Call, *, value: object) -> dict[str, object]:
    """Returns its argument unchanged."""
    return {"value": value}


def sleep(call: Call, *, seconds: float) -> dict[str, object]:
    """Sleeps for `seconds`, then returns how long it actually slept."""
    start = time.monotonic()
    time.sleep(seconds)
    return {"slept": time.monotonic() - start}


def apply(call: Call, *, callback: RemoteCallback, arguments: Mapping[str, Any] | None) -> dict[str, object]:
    """Calls `callback` with `arguments` through the engine and returns what it returned."""
    return {"value": callback(**(arguments or {}))}


def worker_pid(call: Call) -> int:
    """The process id of the worker that runs the call."""
    return os.getpid()


def read_variables(call: Call, *, names: Sequence[str], pause: float) -> Iterator[object]:
    """Yields each variable of `names` as the engine answers it to the call's own token,
    waiting `pause` seconds before each after the first."""
    session = call.session()
    for index, name in enumerate(names):
        if index and pause:
            time.sleep(pause)
        yield session.get_variable(name)
