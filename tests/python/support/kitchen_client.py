"""Calls all four KitchenService RPC shapes and checks the answers, with the generated
code PYTHONPATH selects. Prints `OK` on success.

Usage: kitchen_client.py sync|aio|experimental PORT
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from fixtures.common.v1 import common_pb2  # type: ignore[import-not-found]
from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc  # type: ignore[import-not-found]


def requests() -> list[object]:
    return [kitchen_pb2.KitchenRequest(id=x) for x in ("a", "b", "c")]


def run_sync(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
        reply = stub.GetKitchen(kitchen_pb2.KitchenRequest(id="x"), timeout=10)
        assert (reply.id, dict(reply.labels)) == ("x", {"served": "unary"}), reply
        listed = [k.id for k in stub.ListKitchens(common_pb2.PageRequest(page_size=3), timeout=10)]
        assert listed == ["k0", "k1", "k2"], listed
        _, call = stub.UploadKitchens.with_call(iter([kitchen_pb2.Kitchen(id="u1"), kitchen_pb2.Kitchen(id="u2")]), timeout=10)
        assert dict(call.trailing_metadata())["uploaded"].endswith("u1,u2")
        chat = [k.id for k in stub.Chat(iter(requests()), timeout=10)]
        assert chat == ["A", "B", "C"], chat


async def run_aio(target: str) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
        reply = await stub.GetKitchen(kitchen_pb2.KitchenRequest(id="x"), timeout=10)
        assert (reply.id, dict(reply.labels)) == ("x", {"served": "unary"}), reply
        listed = [k.id async for k in stub.ListKitchens(common_pb2.PageRequest(page_size=3), timeout=10)]
        assert listed == ["k0", "k1", "k2"], listed
        call = stub.UploadKitchens(iter([kitchen_pb2.Kitchen(id="u1"), kitchen_pb2.Kitchen(id="u2")]), timeout=10)
        await call
        assert dict(await call.trailing_metadata())["uploaded"].endswith("u1,u2")
        chat = [k.id async for k in stub.Chat(iter(requests()), timeout=10)]
        assert chat == ["A", "B", "C"], chat


def run_experimental(target: str) -> None:
    """The per-service class of static methods (grpcio-tools' experimental API), which
    dials `target` itself (through `grpc.experimental`, which must be imported, as with
    protoc's code)."""
    import grpc.experimental  # noqa: F401

    service = kitchen_pb2_grpc.KitchenService
    reply = service.GetKitchen(kitchen_pb2.KitchenRequest(id="x"), target, insecure=True, timeout=10)
    assert (reply.id, dict(reply.labels)) == ("x", {"served": "unary"}), reply
    listed = [k.id for k in service.ListKitchens(common_pb2.PageRequest(page_size=3), target, insecure=True, timeout=10)]
    assert listed == ["k0", "k1", "k2"], listed
    service.UploadKitchens(iter([kitchen_pb2.Kitchen(id="e1")]), target, insecure=True, timeout=10)
    chat = [k.id for k in service.Chat(iter(requests()), target, insecure=True, timeout=10)]
    assert chat == ["A", "B", "C"], chat


if __name__ == "__main__":
    target = f"127.0.0.1:{sys.argv[2]}"
    if sys.argv[1] == "sync":
        run_sync(target)
    elif sys.argv[1] == "experimental":
        run_experimental(target)
    else:
        asyncio.run(run_aio(target))
    print("OK")
