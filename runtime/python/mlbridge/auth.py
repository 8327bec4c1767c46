"""Access control on the Python side: the bearer token a context sends to the engine, and
the secret a worker or callback server requires of the engine.

An engine started with ``--auth required`` checks ``authorization: Bearer <token>`` on
every call. A `SessionContext` that creates a session holds its owner token (``ctx.token``);
one that joins a session needs a token of it (``SessionContext(address, id, token=...)``).
The token is added to every call by a thin channel wrapper (`BearerChannel`) reading a
`Bearer` holder, so a token learned from InitializeSession applies to the calls that
follow, streams included. (A grpcio client interceptor did the same at about 50 µs a call,
a tenth of an uncached get; the wrapper costs a function call, and nothing without a token.)

Workers and callback servers are called by the engine only: each requires a random secret
(`RequireSecret`), given to a worker in its environment (``MLBRIDGE_WORKER_SECRET``) and
to the engine by a callback server in RegisterCallback. Secrets and tokens never appear
in ``repr``, logs or error messages.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import grpc
import grpc.aio

from mlbridge_proto import ml_bridge_pb2 as pb

from ._wrap import MetadataCall, WrappedChannel
from .errors import ErrorKind, error_for, send_error

__all__ = ["Bearer", "BearerChannel", "MintedToken", "RequireSecret", "TokenInfo", "WORKER_SECRET_ENV", "new_secret"]

WORKER_SECRET_ENV = "MLBRIDGE_WORKER_SECRET"
"""The environment variable through which the engine gives a worker its secret."""


@dataclass(frozen=True)
class TokenInfo:
    """A token as ListTokens shows it (never its secret)."""

    token_id: str
    parent_id: str
    read_only: bool
    variables: tuple[str, ...]
    deny_tools: bool
    deny_operations: bool
    expires_at: datetime | None
    label: str

    @classmethod
    def from_proto(cls, info: pb.TokenInfo) -> TokenInfo:
        scope = info.scope
        return cls(
            token_id=info.token_id,
            parent_id=info.parent_id,
            read_only=scope.read_only,
            variables=tuple(scope.variables),
            deny_tools=scope.deny_tools,
            deny_operations=scope.deny_operations,
            expires_at=info.expires_at.ToDatetime() if info.HasField("expires_at") else None,
            label=info.label,
        )


@dataclass(frozen=True)
class MintedToken:
    """A token just minted: its text (shown once; pass it as ``token=``) and what it got."""

    token: str = field(repr=False)
    info: TokenInfo


def scope_request(
    session_id: str,
    read_only: bool,
    variables: tuple[str, ...] | list[str],
    deny_tools: bool,
    deny_operations: bool,
    ttl: float | None,
    label: str,
) -> pb.MintTokenRequest:
    """The MintToken request for these arguments."""
    request = pb.MintTokenRequest(session_id=session_id, label=label)
    request.scope.read_only = read_only
    request.scope.variables.extend(variables)
    request.scope.deny_tools = deny_tools
    request.scope.deny_operations = deny_operations
    if ttl is not None:
        request.scope.ttl.FromNanoseconds(int(ttl * 1_000_000_000))
    return request


def new_secret() -> str:
    """256 random bits, as hex."""
    return secrets.token_hex(32)


class Bearer:
    """The token a context sends (None: none). Mutable: a context learns its owner token
    when it creates its session, after its channels exist."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token or None

    def metadata(self, existing: Any) -> list[tuple[str, str | bytes]]:
        merged: list[tuple[str, str | bytes]] = list(existing or ())
        if self.token is not None:
            merged.append(("authorization", f"Bearer {self.token}"))
        return merged

    def __repr__(self) -> str:
        return f"Bearer(token={'<redacted>' if self.token else None})"

    def merged(self, metadata: Any) -> Any:
        """`metadata` with the token added, or unchanged (even `None`) without a token."""
        if self.token is None:
            return metadata
        return self.metadata(metadata)


def BearerChannel(channel: grpc.Channel, bearer: Bearer) -> grpc.Channel:
    """`channel`, adding the holder's token to every call it makes (see `_wrap`)."""

    def around(call: Any, request: Any, timeout: Any, metadata: Any, args: Any, kwargs: Any) -> Any:
        return call(request, timeout, bearer.merged(metadata), *args, **kwargs)

    return WrappedChannel(channel, lambda _method, inner: MetadataCall(inner, around))


def _aio_details(bearer: Bearer, details: Any) -> Any:
    return grpc.aio.ClientCallDetails(
        details.method,
        details.timeout,
        grpc.aio.Metadata(*bearer.metadata(details.metadata)),
        details.credentials,
        details.wait_for_ready,
    )


class AioBearerUnary(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the holder's token to every unary call of an asyncio channel."""

    def __init__(self, bearer: Bearer) -> None:
        self._bearer = bearer

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_aio_details(self._bearer, details), request)


class AioBearerStream(grpc.aio.UnaryStreamClientInterceptor):
    """Adds the holder's token to every server-streaming call of an asyncio channel."""

    def __init__(self, bearer: Bearer) -> None:
        self._bearer = bearer

    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(_aio_details(self._bearer, details), request)


def aio_interceptors(bearer: Bearer) -> list[Any]:
    """The asyncio client interceptors that send `bearer`'s token."""
    return [AioBearerUnary(bearer), AioBearerStream(bearer)]


class RequireSecret(grpc.ServerInterceptor):
    """Refuses, with UNAUTHENTICATED, every call whose ``authorization`` metadata is not
    ``Bearer <secret>`` (compared in constant time). An empty secret checks nothing."""

    def __init__(self, secret: str, what: str) -> None:
        self._expected = f"Bearer {secret}".encode() if secret else None
        self._what = what

    def __repr__(self) -> str:
        return f"RequireSecret({self._what})"

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        if self._expected is None:
            return continuation(details)
        presented = b""
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else bytes(value)
        if hmac.compare_digest(presented, self._expected):
            return continuation(details)
        handler = continuation(details)
        if handler is None:
            return None
        error = error_for(ErrorKind.UNAUTHENTICATED, f"the {self._what} answers only its engine")

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            send_error(context, error)
            return None

        def refuse_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            send_error(context, error)
            return iter(())

        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                refuse_stream, handler.request_deserializer, handler.response_serializer
            )
        return grpc.unary_unary_rpc_method_handler(refuse, handler.request_deserializer, handler.response_serializer)

