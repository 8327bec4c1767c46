"""TLS and mutual TLS between the Python SDK (`SessionContext(address, tls=TlsConfig(...))`
and its asyncio twin) and `mlbridge serve --tls-*`, with certificates made here (trustme):
a round trip, a client certificate required and accepted, a client without one refused, a
server from a CA the client does not trust refused."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc

import sdk_engine
from mlbridge import AsyncSessionContext, SessionContext, TlsConfig, Unauthenticated, Unavailable


def start_tls_engine(engine_bin: Path, tmp_path: Path, ca: trustme.CA, client_ca: trustme.CA | None = None) -> sdk_engine.RunningEngine:
    server = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    flags = ["--tls-cert", str(cert), "--tls-key", str(key)]
    if client_ca is not None:
        client_ca_path = tmp_path / "client-ca.pem"
        client_ca.cert_pem.write_to_path(str(client_ca_path))
        flags += ["--tls-client-ca", str(client_ca_path)]
    return sdk_engine.start_engine(engine_bin, *flags)


def client_tls(ca: trustme.CA, identity: trustme.CA | None = None) -> TlsConfig:
    if identity is None:
        return TlsConfig(ca.cert_pem.bytes())
    client = identity.issue_cert("client@mlbridge.test")
    chain = b"".join(blob.bytes() for blob in client.cert_chain_pems)
    return TlsConfig(ca.cert_pem.bytes(), certificate_chain=chain, private_key=client.private_key_pem.bytes())


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_engine(engine_bin: Path, tmp_path: Path, ca: trustme.CA) -> Iterator[sdk_engine.RunningEngine]:
    engine = start_tls_engine(engine_bin, tmp_path, ca)
    yield engine
    engine.stop()


def test_a_session_over_tls(tls_engine: sdk_engine.RunningEngine, ca: trustme.CA) -> None:
    with SessionContext(tls_engine.address, tls=client_tls(ca)) as ctx:
        ctx.register_variable("secret", "float", 0.5)
        ctx.set_variable("secret", 0.75)
        assert ctx.get_variable("secret") == 0.75
        assert ctx.get_session().variable_count == 1


def test_an_async_session_over_tls_and_a_server_name(tls_engine: sdk_engine.RunningEngine, ca: trustme.CA) -> None:
    async def run() -> float:
        tls = TlsConfig(ca.cert_pem.bytes(), server_name="localhost")
        async with AsyncSessionContext(tls_engine.address, tls=tls) as ctx:
            await ctx.register_variable("x", "float", 1.5)
            value: float = await ctx.get_variable("x")
            return value

    assert asyncio.run(run()) == 1.5


def test_health_answers_over_tls(tls_engine: sdk_engine.RunningEngine, ca: trustme.CA) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.cert_pem.bytes())
    with grpc.secure_channel(tls_engine.address, credentials) as chan:
        reply = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_plaintext_client_is_not_served_by_a_tls_engine(tls_engine: sdk_engine.RunningEngine) -> None:
    with pytest.raises(Unavailable):
        with SessionContext(tls_engine.address, timeout=10):
            pass


def test_a_server_from_an_untrusted_ca_is_refused(tls_engine: sdk_engine.RunningEngine) -> None:
    with pytest.raises(Unavailable) as raised:
        with SessionContext(tls_engine.address, tls=client_tls(trustme.CA()), timeout=10):
            pass
    assert "certificate" in str(raised.value).lower() or "handshake" in str(raised.value).lower()


def test_mutual_tls_accepts_a_client_certificate_and_refuses_none(
    engine_bin: Path, tmp_path: Path, ca: trustme.CA
) -> None:
    client_ca = trustme.CA()
    engine = start_tls_engine(engine_bin, tmp_path, ca, client_ca)
    try:
        with SessionContext(engine.address, tls=client_tls(ca, identity=client_ca)) as ctx:
            ctx.register_variable("x", "integer", 3)
            assert ctx.get_variable("x") == 3
        # Without a certificate the handshake passes and every call is refused with a
        # status that says why.
        with pytest.raises(Unauthenticated) as raised:
            with SessionContext(engine.address, tls=client_tls(ca), timeout=10):
                pass
        assert "this engine requires a client certificate (mutual TLS)" in str(raised.value)
        # A certificate from a CA the engine does not trust fails the handshake.
        with pytest.raises(Unavailable):
            with SessionContext(engine.address, tls=client_tls(ca, identity=trustme.CA()), timeout=10):
                pass
    finally:
        engine.stop()


def test_the_tls_config_keeps_its_key_out_of_its_repr(ca: trustme.CA) -> None:
    tls = client_tls(ca, identity=trustme.CA())
    assert tls.private_key is not None and b"PRIVATE KEY" in tls.private_key
    assert "PRIVATE" not in repr(tls)
    with pytest.raises(ValueError):
        TlsConfig(b"ca", certificate_chain=b"cert")
