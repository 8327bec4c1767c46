"""gRPC channels to the engine, for TCP (``host:port``) and Unix-socket (``unix:/path``)
addresses, in plaintext or over TLS (`TlsConfig`, for an engine started with
``mlbridge serve --tls-cert ... --tls-key ...``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from . import telemetry
from .auth import Bearer, BearerChannel, aio_interceptors

__all__ = ["TlsConfig", "aio_channel", "channel", "channel_options"]


@dataclass(frozen=True, repr=False)
class TlsConfig:
    """TLS to the engine: the CA certificates (PEM) its certificate must chain to, and for
    an engine started with ``--tls-client-ca`` (mutual TLS) this client's certificate chain
    and private key (PEM). `server_name` checks the engine's certificate against another
    name than the address's host. `TlsConfig.from_files` reads the PEM files."""

    root_certificates: bytes
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("TlsConfig: give both certificate_chain and private_key, or neither")

    @classmethod
    def from_files(
        cls,
        ca: str | os.PathLike[str],
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        *,
        server_name: str | None = None,
    ) -> TlsConfig:
        """Reads the CA certificates and, for mutual TLS, the client certificate and key."""

        def read(path: str | os.PathLike[str] | None) -> bytes | None:
            if path is None:
                return None
            with open(path, "rb") as file:
                return file.read()

        root = read(ca)
        assert root is not None
        return cls(root, read(cert), read(key), server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def __repr__(self) -> str:
        # The private key stays out of logs and tracebacks.
        return f"TlsConfig(client_certificate={self.certificate_chain is not None}, server_name={self.server_name!r})"


def channel_options(
    address: str, extra: Sequence[tuple[str, Any]] = (), tls: TlsConfig | None = None
) -> list[tuple[str, Any]]:
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
    if tls is not None and tls.server_name is not None:
        options["grpc.ssl_target_name_override"] = tls.server_name
    options.update(dict(extra))
    return list(options.items())


def channel(
    address: str, extra: Sequence[tuple[str, Any]] = (), tls: TlsConfig | None = None, bearer: Bearer | None = None
) -> grpc.Channel:
    """A blocking channel to the engine at `address` (over TLS when `tls` is given),
    sending `bearer`'s token on every call."""
    options = channel_options(address, extra, tls)
    if tls is None:
        opened = grpc.insecure_channel(address, options=options)
    else:
        opened = grpc.secure_channel(address, tls.credentials(), options=options)
    if bearer is not None:
        opened = BearerChannel(opened, bearer)
    return telemetry.instrument_channel(opened)


def aio_channel(
    address: str, extra: Sequence[tuple[str, Any]] = (), tls: TlsConfig | None = None, bearer: Bearer | None = None
) -> grpc.aio.Channel:
    """An asyncio channel to the engine at `address` (over TLS when `tls` is given),
    sending `bearer`'s token on every call."""
    options = channel_options(address, extra, tls)
    interceptors = [*telemetry.aio_client_interceptors(), *(aio_interceptors(bearer) if bearer else [])] or None
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, tls.credentials(), options=options, interceptors=interceptors)
