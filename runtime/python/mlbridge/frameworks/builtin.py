"""The ``builtin`` adapter (proto/adapters/builtin.toml): operations with no framework
behind them, for health checks, tests and benchmarks."""

from __future__ import annotations

import os
import time

from collections.abc import Mapping
from typing import Any

from ..dispatch import Call, RemoteCallback

__all__ = ["apply", "echo", "noop", "sleep", "worker_pid"]


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
