# Expected: a stub on a `grpc.Channel` is synchronous: its result cannot be awaited.
#   error: Incompatible types in "await" (actual type "Kitchen", expected type "Awaitable[Any]")  [misc]
import grpc

from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc


async def call(channel: grpc.Channel) -> None:
    stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
    await stub.GetKitchen(kitchen_pb2.KitchenRequest())  # E: misc
