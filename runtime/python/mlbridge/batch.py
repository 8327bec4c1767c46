"""Batch updates: collect writes in a block, send them as one atomic SetVariables at its end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from .snapshots import WriteResult

__all__ = ["AsyncBatch", "Batch"]

_Commit = Callable[[Mapping[str, object], Mapping[str, int]], list[WriteResult]]
_AsyncCommit = Callable[[Mapping[str, object], Mapping[str, int]], Awaitable[list[WriteResult]]]


class _Writes:
    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.expected_versions: dict[str, int] = {}
        self.results: list[WriteResult] | None = None
        """The outcome of each write, once the block has ended and the batch was sent."""

    def set(self, name: str, value: object, expected_version: int | None = None) -> None:
        """Queues a write (a later write of the same name replaces an earlier one)."""
        self.values[name] = value
        if expected_version is not None:
            self.expected_versions[name] = expected_version
        else:
            self.expected_versions.pop(name, None)

    def __setitem__(self, name: str, value: object) -> None:
        self.set(name, value)

    def __getitem__(self, name: str) -> Any:
        """The queued value of `name` (KeyError if none is queued)."""
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def discard(self) -> None:
        """Drops every queued write."""
        self.values.clear()
        self.expected_versions.clear()


class Batch(_Writes):
    """Queued writes of a ``with ctx.batch() as batch:`` block. On a normal exit they are
    sent as one atomic SetVariables (nothing is sent for an empty batch); if the block
    raises, nothing is sent. A failed batch raises like `set_variables`."""

    def __init__(self, commit: _Commit) -> None:
        super().__init__()
        self._commit = commit

    def __enter__(self) -> Batch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None and self.values:
            self.results = self._commit(dict(self.values), dict(self.expected_versions))


class AsyncBatch(_Writes):
    """The asyncio twin of `Batch`: ``async with ctx.batch() as batch:``."""

    def __init__(self, commit: _AsyncCommit) -> None:
        super().__init__()
        self._commit = commit

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is None and self.values:
            self.results = await self._commit(dict(self.values), dict(self.expected_versions))
