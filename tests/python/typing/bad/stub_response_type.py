# Expected: a stub call returns the response message, not the request.
#   error: Incompatible types in assignment (expression has type "Kitchen", variable has type "KitchenRequest")  [assignment]
import grpc

from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc


def call(channel: grpc.Channel) -> None:
    stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
    reply: kitchen_pb2.KitchenRequest = stub.GetKitchen(kitchen_pb2.KitchenRequest())  # E: assignment
