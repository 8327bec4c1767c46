"""Access control against an engine started with ``--auth required``: a table over every
RPC of the service descriptor x {no token, malformed, read-only, glob-scoped, another
session's token, an unknown session, expired, revoked}; narrowing, cascading revocation,
watches ended by revocation, filtered lists and watches, batches refused whole, tokens
kept out of logs, and workers and callback servers refusing calls without their secret."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from mlbridge import AsyncSessionContext, BridgeError, SessionContext
from mlbridge.auth import Bearer, BearerChannel
from mlbridge_adapters.builtin import Builtin
from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc
from sdk_engine import RunningEngine, eventually, start_engine, unique, worker_env

SERVICE = pb.DESCRIPTOR.services_by_name["MLBridge"]
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def secured(engine_bin: Path) -> Iterator[RunningEngine]:
    running = start_engine(engine_bin, "--auth", "required")
    yield running
    running.stop()


def _requests(session: str, var: str) -> dict[str, Message]:
    """One request per RPC about `session` and variable `var`."""
    value = pb.Value(float_value=1.0)
    return {
        "Ping": pb.PingRequest(),
        "InitializeSession": pb.InitializeSessionRequest(session_id=session),
        "GetSession": pb.GetSessionRequest(session_id=session),
        "Heartbeat": pb.HeartbeatRequest(session_id=session),
        "CleanupSession": pb.CleanupSessionRequest(session_id=session),
        "RegisterVariable": pb.RegisterVariableRequest(
            session_id=session, name=f"{var}.new", type=pb.VARIABLE_TYPE_FLOAT, initial_value=value
        )
        if var != "b"
        else pb.RegisterVariableRequest(session_id=session, name="b2", type=pb.VARIABLE_TYPE_FLOAT, initial_value=value),
        "GetVariable": pb.GetVariableRequest(session_id=session, name=var),
        "SetVariable": pb.SetVariableRequest(session_id=session, name=var, value=value),
        "DeleteVariable": pb.DeleteVariableRequest(session_id=session, name=var, expected_version=999),
        "ListVariables": pb.ListVariablesRequest(session_id=session),
        "GetVariables": pb.GetVariablesRequest(session_id=session, names=["a.x", var]),
        "SetVariables": pb.SetVariablesRequest(
            session_id=session, writes=[pb.VariableWrite(name=var, value=value)], atomic=True
        ),
        "GetVariableHistory": pb.GetVariableHistoryRequest(session_id=session, name=var),
        "RollbackVariable": pb.RollbackVariableRequest(session_id=session, name=var, target_version=1),
        "WatchVariables": pb.WatchVariablesRequest(session_id=session, names=[var], include_initial_values=True),
        "StartOptimization": pb.StartOptimizationRequest(session_id=session, variable_names=[var], optimizer_id="t"),
        "StopOptimization": pb.StopOptimizationRequest(session_id=session, lock_token="x", final_values={var: value}),
        "RegisterTools": pb.RegisterToolsRequest(session_id=session),
        "ListTools": pb.ListToolsRequest(session_id=session),
        "ExecuteTool": pb.ExecuteToolRequest(session_id=session, tool_name="echo"),
        "ExecuteStreamingTool": pb.ExecuteStreamingToolRequest(session_id=session, tool_name="echo"),
        "ExecuteFrameworkOperation": pb.ExecuteFrameworkOperationRequest(
            session_id=session,
            framework="none",
            operation="none",
            parameters={"p": pb.ParameterValue(binding=pb.VariableBinding(variable_name=var))},
        ),
        "DescribeAdapters": pb.DescribeAdaptersRequest(),
        "RegisterCallback": pb.RegisterCallbackRequest(session_id=session, name="cb", endpoint="127.0.0.1:1"),
        "UnregisterCallback": pb.UnregisterCallbackRequest(session_id=session, name="nothing"),
        "InvokeCallback": pb.InvokeCallbackRequest(session_id=session, name="nothing"),
        "CreateResource": pb.CreateResourceRequest(session_id=session, kind="nothing"),
        "InvokeResource": pb.InvokeResourceRequest(session_id=session, resource_id="nothing", method="m"),
        "ReleaseResource": pb.ReleaseResourceRequest(session_id=session, resource_id="nothing"),
        "ListResources": pb.ListResourcesRequest(session_id=session),
        "MintToken": pb.MintTokenRequest(session_id=session),
        "RevokeToken": pb.RevokeTokenRequest(session_id=session, token_id="0000000000000000"),
        "ListTokens": pb.ListTokensRequest(session_id=session),
    }


SESSIONLESS = {"Ping", "DescribeAdapters"}
# What a read-only token may not do.
WRITES = {
    "CleanupSession",
    "RegisterVariable",
    "SetVariable",
    "DeleteVariable",
    "SetVariables",
    "RollbackVariable",
    "StartOptimization",
    "StopOptimization",
    "RegisterTools",
    "RegisterCallback",
    "UnregisterCallback",
    "CreateResource",
    "InvokeResource",
    "ReleaseResource",
}
# What a token limited to `a.*` may not do about variable `b`.
OUTSIDE_GLOB = {
    "CleanupSession",
    "RegisterVariable",
    "GetVariable",
    "SetVariable",
    "DeleteVariable",
    "GetVariables",
    "SetVariables",
    "GetVariableHistory",
    "RollbackVariable",
    "WatchVariables",
    "StartOptimization",
    "StopOptimization",
    "ExecuteFrameworkOperation",
}


def call(address: str, method: str, request: Message, token: str | None) -> tuple[grpc.StatusCode, str]:
    """Calls `method` with `token` (raw, so the test sees the engine's exact answer)."""
    descriptor = SERVICE.methods_by_name[method]
    response_class: Any = getattr(pb, descriptor.output_type.name)
    metadata = [] if token is None else [("authorization", token if token.startswith("Bearer") else f"Bearer {token}")]
    with grpc.insecure_channel(address) as opened:
        path = f"/mlbridge.v1.MLBridge/{method}"
        try:
            if descriptor.server_streaming:
                stream = opened.unary_stream(
                    path, request_serializer=type(request).SerializeToString, response_deserializer=response_class.FromString
                )(request, metadata=metadata, timeout=1.0)
                next(iter(stream), None)
                stream.cancel()
            else:
                opened.unary_unary(
                    path, request_serializer=type(request).SerializeToString, response_deserializer=response_class.FromString
                )(request, metadata=metadata, timeout=5.0)
        except grpc.RpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


class Tokens:
    """A session `s` with variables `a.x` and `b`, and tokens of every kind."""

    def __init__(self, address: str) -> None:
        self.owner_ctx = SessionContext(address, unique("auth"), cache=False, watch_cache=False).open()
        ctx = self.owner_ctx
        ctx.register_variable("a.x", "float", 0.5)
        ctx.register_variable("b", "float", 0.5)
        self.session = ctx.session_id
        assert ctx.token is not None
        self.owner = ctx.token
        self.read_only = ctx.mint_token(read_only=True, label="ro").token
        self.glob = ctx.mint_token(variables=["a.*"], label="glob").token
        expiring = ctx.mint_token(ttl=0.2)
        revoked = ctx.mint_token()
        ctx.revoke_token(revoked.info.token_id)
        self.revoked = revoked.token
        self.other_ctx = SessionContext(address, cache=False, watch_cache=False).open()
        assert self.other_ctx.token is not None
        self.other = self.other_ctx.token
        time.sleep(0.3)
        self.expired = expiring.token

    def close(self) -> None:
        self.other_ctx.close()
        self.owner_ctx.close()


@pytest.fixture(scope="module")
def tokens(secured: RunningEngine) -> Iterator[Tokens]:
    made = Tokens(secured.address)
    yield made
    made.close()


def test_the_table_covers_every_rpc() -> None:
    assert set(_requests("s", "b")) == set(SERVICE.methods_by_name)


@pytest.mark.parametrize("method", sorted(SERVICE.methods_by_name))
def test_every_rpc_refuses_calls_without_a_valid_token(method: str, secured: RunningEngine, tokens: Tokens) -> None:
    request = _requests(tokens.session, "b")[method]
    for token in (None, "garbage", "Bearer mlb_00_11", tokens.expired, tokens.revoked):
        code, details = call(secured.address, method, request, token)
        assert code == UNAUTH, (method, token is None, code, details)
        for secret in (tokens.expired, tokens.revoked):
            assert secret not in details
    if method in SESSIONLESS:
        return
    other = call(secured.address, method, request, tokens.other)
    assert other[0] == UNAUTH, (method, other)
    if method == "InitializeSession":
        return  # naming a session that does not exist creates it: that needs no token
    # Another session's token, and a token for a session that does not exist: the same answer.
    missing = call(secured.address, method, _requests(unique("nosuch"), "b")[method], tokens.owner)
    assert other == missing, method


@pytest.mark.parametrize("method", sorted(SERVICE.methods_by_name))
def test_scoped_tokens_get_permission_denied(method: str, secured: RunningEngine, tokens: Tokens) -> None:
    request = _requests(tokens.session, "b")[method]
    code, details = call(secured.address, method, request, tokens.read_only)
    if method in WRITES:
        assert code == DENIED, (method, code, details)
    else:
        assert code not in (UNAUTH, DENIED), (method, code, details)
    code, details = call(secured.address, method, request, tokens.glob)
    if method in OUTSIDE_GLOB:
        assert code == DENIED, (method, code, details)
    else:
        assert code not in (UNAUTH, DENIED), (method, code, details)
    # Inside its glob, the scoped token works.
    if method in {"GetVariable", "SetVariable", "GetVariableHistory"}:
        inside = _requests(tokens.session, "a.x")[method]
        assert call(secured.address, method, inside, tokens.glob)[0] == grpc.StatusCode.OK


def test_joining_needs_a_token_and_a_created_session_holds_its_owner_token(secured: RunningEngine) -> None:
    with SessionContext(secured.address) as owner:
        assert owner.created and owner.token and owner.token.startswith("mlb_")
        owner.register_variable("x", "integer", 1)
        with pytest.raises(BridgeError) as refused:
            SessionContext(secured.address, owner.session_id).open()
        assert refused.value.kind.name == "UNAUTHENTICATED"
        with SessionContext(secured.address, owner.session_id, token=owner.token) as joined:
            assert joined.token == owner.token and joined["x"] == 1


def test_a_token_is_never_wider_than_its_parent(secured: RunningEngine) -> None:
    with SessionContext(secured.address) as owner:
        owner.register_variable("a.x", "integer", 1)
        ro = owner.mint_token(read_only=True, variables=["a.*"], deny_tools=True)
        with SessionContext(secured.address, owner.session_id, token=ro.token) as narrow:
            child = narrow.mint_token()
            assert child.info.read_only and child.info.deny_tools and child.info.variables == ("a.*",)
            with pytest.raises(BridgeError) as wider:
                narrow.mint_token(variables=["*"])
            assert wider.value.kind.name == "PERMISSION_DENIED"
            assert ro.token not in str(wider.value)
            expiring = narrow.mint_token(ttl=3600)
            assert expiring.info.expires_at is not None
            ids = {t.token_id for t in narrow.list_tokens()}
            assert ids == {ro.info.token_id, child.info.token_id, expiring.info.token_id}
        with pytest.raises(BridgeError):
            owner.mint_token(variables=["[bad"])


def test_revocation_cascades_and_ends_watches(secured: RunningEngine) -> None:
    with SessionContext(secured.address, cache=False, watch_cache=False) as owner:
        owner.register_variable("v", "integer", 1)
        parent = owner.mint_token()
        with SessionContext(secured.address, owner.session_id, token=parent.token, cache=False, watch_cache=False) as mid:
            child = mid.mint_token(read_only=True)
        bearer = Bearer(child.token)
        watch_channel = BearerChannel(grpc.insecure_channel(secured.address), bearer)
        stub = pb_grpc.MLBridgeStub(watch_channel)
        stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=owner.session_id, include_initial_values=True))
        first = next(stream)
        assert first.variable_name == "v"
        started = time.monotonic()
        revoked = owner.revoke_token(parent.info.token_id)
        assert set(revoked) == {parent.info.token_id, child.info.token_id}
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:
                pass
        assert ended.value.code() == UNAUTH
        assert time.monotonic() - started < 5
        watch_channel.close()
        code, _ = call(secured.address, "GetVariable", pb.GetVariableRequest(session_id=owner.session_id, name="v"), child.token)
        assert code == UNAUTH
        assert [t.token_id for t in owner.list_tokens()] == [owner.list_tokens()[0].token_id]


def test_lists_and_watches_show_only_what_the_token_may_read(secured: RunningEngine) -> None:
    with SessionContext(secured.address, cache=False, watch_cache=False) as owner:
        for name in ("a.x", "a.y", "b"):
            owner.register_variable(name, "integer", 1)
        scoped = owner.mint_token(variables=["a.*"])
        with SessionContext(secured.address, owner.session_id, token=scoped.token, cache=False, watch_cache=False) as ctx:
            assert [v.name for v in ctx.list_variables()] == ["a.x", "a.y"]
            stub = pb_grpc.MLBridgeStub(
                BearerChannel(grpc.insecure_channel(secured.address), Bearer(scoped.token))
            )
            stream = stub.WatchVariables(
                pb.WatchVariablesRequest(session_id=owner.session_id, include_initial_values=True), timeout=10
            )
            seen = []
            for update in stream:  # the initial values, then a marker that names no variable
                if not update.variable_name:
                    break
                seen.append(update.variable_name)
            owner.set_variable("b", 2)
            owner.set_variable("a.y", 2)
            for update in stream:
                seen.append(update.variable_name)
                if update.variable_name == "a.y":
                    break
            assert seen == ["a.x", "a.y", "a.y"]
            stream.cancel()
            # A batch with one forbidden key is refused whole.
            with pytest.raises(BridgeError) as refused:
                ctx.set_variables({"a.x": 5, "b": 5}, True)
            assert refused.value.kind.name == "PERMISSION_DENIED"
            assert owner.get_variable("a.x") == 1
            with pytest.raises(BridgeError):
                ctx.get_variables(["a.x", "b"])


def test_tokens_stay_out_of_logs(engine_bin: Path, tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [str(engine_bin), "serve", "--listen", "127.0.0.1:0", "--auth", "required", "--log-format", "json", "--log-level", "debug"],
            stdout=subprocess.PIPE,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            address = process.stdout.readline().split()[-1]
            with SessionContext(address) as ctx:
                ctx.register_variable("x", "integer", 1)
                minted = ctx.mint_token(read_only=True)
                secrets = [ctx.token or "", minted.token]
                call(address, "SetVariable", pb.SetVariableRequest(session_id=ctx.session_id, name="x"), minted.token)
                call(address, "GetVariable", pb.GetVariableRequest(session_id="other", name="x"), minted.token)
        finally:
            process.terminate()
            process.wait(timeout=10)
    text = log.read_text()
    assert "rpc" in text  # debug logging did record the calls
    for secret in secrets:
        assert secret and secret not in text
        assert secret.rsplit("_", 1)[1] not in text


def test_the_callback_server_refuses_calls_without_its_secret(secured: RunningEngine) -> None:
    with SessionContext(secured.address) as ctx:

        def double(x: int) -> int:
            return 2 * x

        ctx.register_callback(double)
        assert ctx.call_callback("double", x=2) == 4  # the engine presents the secret
        endpoint = ctx._callbacks.endpoint  # type: ignore[union-attr]
        with grpc.insecure_channel(endpoint) as opened:
            stub = pb_grpc.CallbackStub(opened)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ExecuteCallback(pb.ExecuteCallbackRequest(callback_name="double"), timeout=5)
            assert refused.value.code() == UNAUTH


def test_a_worker_refuses_calls_without_its_secret(tmp_path: Path) -> None:
    env = {**os.environ, "MLBRIDGE_WORKER_SECRET": "s3cret"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "mlbridge.worker", "--listen", "127.0.0.1:0", "--worker-id", "w", "--ignore-stdin-eof"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    try:
        assert worker.stdout is not None
        line = ""
        while not line.startswith("MLBRIDGE_WORKER_READY"):
            line = worker.stdout.readline()
            assert line, "the worker ended before it was ready"
        address = line.split()[-1]
        with grpc.insecure_channel(address) as opened:
            stub = pb_grpc.WorkerStub(opened)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Ping(pb.PingRequest(), timeout=5)
            assert refused.value.code() == UNAUTH
            with pytest.raises(grpc.RpcError):
                stub.Ping(pb.PingRequest(), timeout=5, metadata=[("authorization", "Bearer wrong")])
            assert stub.Ping(pb.PingRequest(), timeout=5, metadata=[("authorization", "Bearer s3cret")])
    finally:
        worker.terminate()
        worker.wait(timeout=10)


def test_auth_off_is_refused_beyond_loopback_and_announced_locally(engine_bin: Path) -> None:
    refused = subprocess.run(
        [str(engine_bin), "serve", "--listen", "0.0.0.0:0", "--auth", "off"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode != 0 and "--auth off" in refused.stderr
    process = subprocess.Popen(
        [str(engine_bin), "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert re.search(r"access control is off", err)


def test_an_engine_reaches_its_workers_with_their_secret(engine_bin: Path) -> None:
    # The engine starts only once each worker answered Describe, which needs the secret.
    running = start_engine(engine_bin, "--auth", "required", "--workers", "1", env=worker_env())
    try:
        with SessionContext(running.address) as ctx:
            ctx.register_variable("x", "integer", 1)
            assert ctx.get_variable("x") == 1
    finally:
        running.stop()


def test_a_worker_calls_back_with_a_child_token_of_the_callers_scope(engine_bin: Path) -> None:
    running = start_engine(
        engine_bin, "--auth", "required", "--workers", "1", "--adapter", "mlbridge_adapters.builtin", env=worker_env()
    )
    try:
        with SessionContext(running.address) as ctx:

            @ctx.register_callback
            def double(x: float) -> float:
                return x * 2

            # The worker reaches the callback through the engine with a token minted for the
            # operation (the owner's scope), revoked when the operation ends.
            assert Builtin(ctx).apply("double", arguments={"x": 1.5}).value == 3.0
            assert [t.label for t in ctx.list_tokens()] == ["owner"]
            no_tools = ctx.mint_token(deny_tools=True)
            with SessionContext(running.address, ctx.session_id, token=no_tools.token) as narrow:
                # Operations are allowed, but the worker's call back inherits "no tools".
                with pytest.raises(BridgeError) as refused:
                    Builtin(narrow).apply("double", arguments={"x": 1.5})
                assert refused.value.kind.name == "PERMISSION_DENIED"
                assert refused.value.context.get("worker_id")  # refused to the worker's call back
    finally:
        running.stop()


def test_a_streaming_worker_tool_calls_back_with_a_child_token_and_ends_with_its_revocation(engine_bin: Path) -> None:
    running = start_engine(
        engine_bin, "--auth", "required", "--workers", "1", "--adapter", "mlbridge_adapters.builtin", env=worker_env()
    )
    try:
        with SessionContext(running.address, cache=False, watch_cache=False) as owner:
            owner.register_variable("a", "integer", 1)
            owner.register_variable("b", "integer", 2)
            # The worker reads each variable back through the engine with a token minted
            # for the stream, revoked when the stream ends.
            assert list(owner.tools.read_variables.stream(names=["a", "b"])) == [1, 2]
            assert [t.label for t in owner.list_tokens()] == ["owner"]
            # A client that goes away mid-stream takes the stream's token with it.
            left = iter(owner.tools.read_variables.stream(names=["a", "a"], pause=30.0))
            assert next(left) == 1
            assert [t.label for t in owner.list_tokens()] == ["owner", "operation"]
            left.close()  # type: ignore[attr-defined]
            assert eventually(lambda: [t.label for t in owner.list_tokens()], lambda labels: labels == ["owner"])

            only_a = owner.mint_token(variables=["a"])
            with SessionContext(running.address, owner.session_id, token=only_a.token, cache=False) as narrow:
                chunks = iter(narrow.tools.read_variables.stream(names=["a", "b"]))
                assert next(chunks) == 1
                # The worker's read of `b` carries the caller's scope, so it is refused.
                with pytest.raises(BridgeError) as refused:
                    next(chunks)
                assert refused.value.kind.name == "PERMISSION_DENIED"
                assert refused.value.context.get("worker_id")

            # Revoking the caller's token ends its open stream (and the worker's token).
            revocable = owner.mint_token()
            with SessionContext(running.address, owner.session_id, token=revocable.token, cache=False) as caller:
                chunks = iter(caller.tools.read_variables.stream(names=["a", "a"], pause=30.0))
                assert next(chunks) == 1
                # The owner's, `only_a`, the caller's, and the stream's (the narrow one's is gone).
                assert [t.label for t in owner.list_tokens()] == ["owner", "", "", "operation"]
                started = time.monotonic()
                owner.revoke_token(revocable.info.token_id)
                with pytest.raises(BridgeError) as ended:
                    next(chunks)
                assert ended.value.kind.name == "UNAUTHENTICATED"
                assert "tool stream" in str(ended.value)
                assert time.monotonic() - started < 20  # not the worker's 30 s pause
            assert [t.label for t in owner.list_tokens()] == ["owner", ""]
    finally:
        running.stop()


def test_the_async_context_holds_sends_and_mints_tokens(secured: RunningEngine) -> None:
    async def body() -> None:
        async with AsyncSessionContext(secured.address) as owner:
            assert owner.created and owner.token and owner.token.startswith("mlb_")
            await owner.register_variable("a.x", "integer", 1)
            await owner.register_variable("b", "integer", 1)
            with pytest.raises(BridgeError) as refused:
                await AsyncSessionContext(secured.address, owner.session_id).open()
            assert refused.value.kind.name == "UNAUTHENTICATED"
            scoped = await owner.mint_token(variables=["a.*"], read_only=True)
            async with AsyncSessionContext(secured.address, owner.session_id, token=scoped.token) as reader:
                assert reader.token == scoped.token
                assert [v.name for v in await reader.list_variables()] == ["a.x"]
                with pytest.raises(BridgeError) as denied:
                    await reader.set_variable("a.x", 2)
                assert denied.value.kind.name == "PERMISSION_DENIED"
                assert [t.token_id for t in await reader.list_tokens()] == [scoped.info.token_id]
            assert await owner.revoke_token(scoped.info.token_id) == [scoped.info.token_id]

    asyncio.run(asyncio.wait_for(body(), timeout=60))


def test_a_bearer_channel_adds_the_token_to_every_call_shape_and_nothing_without_one() -> None:
    """BearerChannel replaces a grpcio interceptor (about 50 µs a call): it must forward
    every call form with the token merged into the caller's metadata, and leave calls
    untouched while the holder has no token."""
    seen: list[tuple[str, object]] = []

    class Inner:
        def __call__(self, request: object, timeout: object = None, metadata: object = None, **kw: object) -> str:
            seen.append(("call", metadata))
            return "called"

        def with_call(self, request: object, timeout: object = None, metadata: object = None, **kw: object) -> str:
            seen.append(("with_call", metadata))
            return "with_call"

        def future(self, request: object, timeout: object = None, metadata: object = None, **kw: object) -> str:
            seen.append(("future", metadata))
            return "future"

    class FakeChannel:
        def unary_unary(self, *args: object, **kwargs: object) -> Inner:
            return Inner()

    bearer = Bearer(None)
    method = BearerChannel(FakeChannel(), bearer).unary_unary("/m")  # type: ignore[arg-type]
    assert method("r") == "called"
    bearer.token = "t0ken"
    assert method("r", 5, [("x", "1")]) == "called"
    assert method.with_call("r", metadata=None) == "with_call"
    assert method.future("r") == "future"
    auth = ("authorization", "Bearer t0ken")
    assert seen == [("call", None), ("call", [("x", "1"), auth]), ("with_call", [auth]), ("future", [auth])]
