"""Implements and calls the generated gRPC stubs with `grpc` and `grpc.aio`; mypy --strict
must pass and the program must run (it starts local servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent import futures

import grpc
from google.protobuf import empty_pb2

from fixtures.common.v1 import common_pb2
from fixtures.keywords.v1 import keywords_pb2, keywords_pb2_grpc
from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc


class SyncKitchen(kitchen_pb2_grpc.KitchenServiceServicer):
    """A `grpc` servicer: plain values and iterators, `grpc.ServicerContext`."""

    def GetKitchen(
        self, request: kitchen_pb2.KitchenRequest, context: grpc.ServicerContext
    ) -> kitchen_pb2.Kitchen:
        return kitchen_pb2.Kitchen(id=request.id)

    def ListKitchens(
        self, request: common_pb2.PageRequest, context: grpc.ServicerContext
    ) -> Iterator[kitchen_pb2.Kitchen]:
        for i in range(request.page_size):
            yield kitchen_pb2.Kitchen(id=str(i))

    def UploadKitchens(
        self, request_iterator: Iterator[kitchen_pb2.Kitchen], context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        assert [k.id for k in request_iterator] == ["a", "b"]
        return empty_pb2.Empty()

    def Chat(
        self, request_iterator: Iterator[kitchen_pb2.KitchenRequest], context: grpc.ServicerContext
    ) -> Iterator[kitchen_pb2.Kitchen]:
        for request in request_iterator:
            yield kitchen_pb2.Kitchen(id=request.id)


class AsyncKitchen(kitchen_pb2_grpc.KitchenServiceServicer):
    """A `grpc.aio` servicer: coroutines and async generators, `grpc.aio.ServicerContext`."""

    async def GetKitchen(
        self,
        request: kitchen_pb2.KitchenRequest,
        context: grpc.aio.ServicerContext[kitchen_pb2.KitchenRequest, kitchen_pb2.Kitchen],
    ) -> kitchen_pb2.Kitchen:
        return kitchen_pb2.Kitchen(id=request.id)

    async def ListKitchens(
        self,
        request: common_pb2.PageRequest,
        context: grpc.aio.ServicerContext[common_pb2.PageRequest, kitchen_pb2.Kitchen],
    ) -> AsyncIterator[kitchen_pb2.Kitchen]:
        for i in range(request.page_size):
            yield kitchen_pb2.Kitchen(id=str(i))

    async def UploadKitchens(
        self,
        request_iterator: AsyncIterator[kitchen_pb2.Kitchen],
        context: grpc.aio.ServicerContext[kitchen_pb2.Kitchen, empty_pb2.Empty],
    ) -> empty_pb2.Empty:
        assert [k.id async for k in request_iterator] == ["a", "b"]
        return empty_pb2.Empty()

    async def Chat(
        self,
        request_iterator: AsyncIterator[kitchen_pb2.KitchenRequest],
        context: grpc.aio.ServicerContext[kitchen_pb2.KitchenRequest, kitchen_pb2.Kitchen],
    ) -> AsyncIterator[kitchen_pb2.Kitchen]:
        async for request in request_iterator:
            yield kitchen_pb2.Kitchen(id=request.id)


class Keywords(keywords_pb2_grpc.KeywordServiceServicer):
    """Methods named like keywords are reached as `async_` and `None_`."""

    def Match(
        self, request: keywords_pb2.Keywords, context: grpc.ServicerContext
    ) -> keywords_pb2.Keywords:
        return keywords_pb2.Keywords(match=request.match)

    def async_(self, request: keywords_pb2.type, context: grpc.ServicerContext) -> keywords_pb2.type:
        return keywords_pb2.type()

    def None_(self, request: keywords_pb2.Keywords, context: grpc.ServicerContext) -> keywords_pb2.type:
        return keywords_pb2.type()


def requests() -> Iterator[kitchen_pb2.KitchenRequest]:
    yield kitchen_pb2.KitchenRequest(id="x")
    yield kitchen_pb2.KitchenRequest(id="y")


def run_sync() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    kitchen_pb2_grpc.add_KitchenServiceServicer_to_server(SyncKitchen(), server)
    keywords_pb2_grpc.add_KeywordServiceServicer_to_server(Keywords(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
            kitchen: kitchen_pb2.Kitchen = stub.GetKitchen(kitchen_pb2.KitchenRequest(id="k"), timeout=5)
            assert kitchen.id == "k"
            future = stub.GetKitchen.future(kitchen_pb2.KitchenRequest(id="f"))
            assert future.result().id == "f"
            listed = [k.id for k in stub.ListKitchens(common_pb2.PageRequest(page_size=2))]
            assert listed == ["0", "1"]
            empty: empty_pb2.Empty = stub.UploadKitchens(
                iter([kitchen_pb2.Kitchen(id="a"), kitchen_pb2.Kitchen(id="b")])
            )
            assert empty == empty_pb2.Empty()
            assert [k.id for k in stub.Chat(requests())] == ["x", "y"]

            keywords = keywords_pb2_grpc.KeywordServiceStub(channel)
            assert keywords.Match(keywords_pb2.Keywords(match="m")).match == "m"
            named: keywords_pb2.type = keywords.async_(keywords_pb2.type())
            assert named == keywords.None_(keywords_pb2.Keywords())
    finally:
        server.stop(None)


async def run_async() -> None:
    server = grpc.aio.server()
    kitchen_pb2_grpc.add_KitchenServiceServicer_to_server(AsyncKitchen(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
            typed: kitchen_pb2_grpc.KitchenServiceAsyncStub = stub
            kitchen: kitchen_pb2.Kitchen = await typed.GetKitchen(kitchen_pb2.KitchenRequest(id="k"))
            assert kitchen.id == "k"
            listed = [k.id async for k in stub.ListKitchens(common_pb2.PageRequest(page_size=3))]
            assert listed == ["0", "1", "2"]

            async def upload() -> AsyncIterator[kitchen_pb2.Kitchen]:
                yield kitchen_pb2.Kitchen(id="a")
                yield kitchen_pb2.Kitchen(id="b")

            empty: empty_pb2.Empty = await stub.UploadKitchens(upload())
            assert empty == empty_pb2.Empty()
            call = stub.Chat(requests())
            assert [k.id async for k in call] == ["x", "y"]
    finally:
        await server.stop(None)


if __name__ == "__main__":
    run_sync()
    asyncio.run(run_async())
    print("ok")
