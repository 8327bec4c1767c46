"""A blocking gRPC channel whose multi-callables are wrapped, one per method.

What the SDK adds to every call (the bearer token, a client span) is added by wrapping the
channel's multi-callables rather than with grpcio client interceptors: an interceptor
costs about 50 µs a call (its `_with_call` and outcome objects), a tenth of an uncached
get on a fast machine, where a wrapper costs a function call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

# (method path, the channel's multi-callable) -> the multi-callable the stub gets.
Wrap = Callable[[str, Any], Any]


class WrappedChannel(grpc.Channel):
    """`channel` with every multi-callable it makes passed through `wrap`."""

    def __init__(self, channel: grpc.Channel, wrap: Wrap) -> None:
        self._channel = channel
        self._wrap = wrap

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(method, self._channel.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(method, self._channel.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(method, self._channel.stream_unary(method, *args, **kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._wrap(method, self._channel.stream_stream(method, *args, **kwargs))

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> WrappedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MetadataCall:
    """A multi-callable that runs the wrapped one's calls (`__call__`, and `with_call` and
    `future` for unary requests) through `around(call, request, timeout, metadata, args,
    kwargs)`, which makes the call (typically with other metadata)."""

    __slots__ = ("_around", "_inner")

    def __init__(self, inner: Any, around: Callable[..., Any]) -> None:
        self._inner = inner
        self._around = around

    def __call__(self, request: Any, timeout: Any = None, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self._around(self._inner, request, timeout, metadata, args, kwargs)

    def with_call(self, request: Any, timeout: Any = None, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self._around(self._inner.with_call, request, timeout, metadata, args, kwargs)

    def future(self, request: Any, timeout: Any = None, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self._around(self._inner.future, request, timeout, metadata, args, kwargs)
