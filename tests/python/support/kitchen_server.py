"""A KitchenService server (all four RPC shapes) on 127.0.0.1, from whichever generated code
PYTHONPATH selects. Prints `PORT <n>` once serving; stops when stdin closes.

Usage: kitchen_server.py sync|aio
"""

from __future__ import annotations

import asyncio
import sys
from concurrent import futures
from typing import Any, AsyncIterator, Iterator

import grpc
from google.protobuf import empty_pb2

from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc  # type: ignore[import-not-found]

UPLOADED: list[str] = []


class Kitchens(kitchen_pb2_grpc.KitchenServiceServicer):  # type: ignore[misc]
    def GetKitchen(self, request: Any, context: Any) -> Any:
        return kitchen_pb2.Kitchen(id=request.id, labels={"served": "unary"})

    def ListKitchens(self, request: Any, context: Any) -> Iterator[Any]:
        for i in range(request.page_size):
            yield kitchen_pb2.Kitchen(id=f"k{i}")

    def UploadKitchens(self, request_iterator: Any, context: Any) -> Any:
        UPLOADED.extend(k.id for k in request_iterator)
        context.set_trailing_metadata((("uploaded", ",".join(UPLOADED)),))
        return empty_pb2.Empty()

    def Chat(self, request_iterator: Any, context: Any) -> Iterator[Any]:
        for request in request_iterator:
            yield kitchen_pb2.Kitchen(id=request.id.upper())


class AsyncKitchens(kitchen_pb2_grpc.KitchenServiceServicer):  # type: ignore[misc]
    async def GetKitchen(self, request: Any, context: Any) -> Any:
        return kitchen_pb2.Kitchen(id=request.id, labels={"served": "unary"})

    async def ListKitchens(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for i in range(request.page_size):
            yield kitchen_pb2.Kitchen(id=f"k{i}")

    async def UploadKitchens(self, request_iterator: Any, context: Any) -> Any:
        async for kitchen in request_iterator:
            UPLOADED.append(kitchen.id)
        context.set_trailing_metadata((("uploaded", ",".join(UPLOADED)),))
        return empty_pb2.Empty()

    async def Chat(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for request in request_iterator:
            yield kitchen_pb2.Kitchen(id=request.id.upper())


def serve_sync() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    kitchen_pb2_grpc.add_KitchenServiceServicer_to_server(Kitchens(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(grace=None)


async def serve_aio() -> None:
    server = grpc.aio.server()
    kitchen_pb2_grpc.add_KitchenServiceServicer_to_server(AsyncKitchens(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(grace=None)


if __name__ == "__main__":
    if sys.argv[1] == "sync":
        serve_sync()
    else:
        asyncio.run(serve_aio())
