"""gRPC channels to the engine, for TCP (``host:port``) and Unix-socket (``unix:/path``)
addresses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import grpc.aio

__all__ = ["aio_channel", "channel", "channel_options"]


def channel_options(address: str, extra: Sequence[tuple[str, Any]] = ()) -> list[tuple[str, Any]]:
    """The channel options the engine needs for `address`, then `extra` (which win).

    grpc-core sends a Unix socket's path as the HTTP/2 `:authority`, which the engine's
    HTTP/2 stack rejects as malformed, so Unix addresses name a plain authority. Received
    messages are not capped at grpc's 4 MiB default: the engine enforces its own limit.
    Each channel gets its own connection (no process-wide subchannel sharing), so a
    context's streams and calls never queue behind another context's traffic.
    """
    options: dict[str, Any] = {
        "grpc.max_receive_message_length": -1,
        "grpc.max_send_message_length": -1,
        "grpc.use_local_subchannel_pool": 1,
    }
    if address.startswith("unix:") or address.startswith("unix-abstract:"):
        options["grpc.default_authority"] = "localhost"
    options.update(dict(extra))
    return list(options.items())


def channel(address: str, extra: Sequence[tuple[str, Any]] = ()) -> grpc.Channel:
    """A blocking channel to the engine at `address`."""
    return grpc.insecure_channel(address, options=channel_options(address, extra))


def aio_channel(address: str, extra: Sequence[tuple[str, Any]] = ()) -> grpc.aio.Channel:
    """An asyncio channel to the engine at `address`."""
    return grpc.aio.insecure_channel(address, options=channel_options(address, extra))
