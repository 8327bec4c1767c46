# Expected: a stub on a `grpc.aio.Channel` returns a call to await, not the response.
#   error: Incompatible types in assignment (expression has type "UnaryUnaryCall[KitchenRequest, Kitchen]", variable has type "Kitchen")  [assignment]
from grpc import aio

from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc


async def call(channel: aio.Channel) -> None:
    stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
    reply: kitchen_pb2.Kitchen = stub.GetKitchen(kitchen_pb2.KitchenRequest())  # E: assignment
