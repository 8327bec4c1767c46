# Expected: a stub method takes its own request message.
#   error: Argument 1 to "__call__" of "UnaryUnaryMultiCallable" has incompatible type "PageRequest"; expected "KitchenRequest"  [arg-type]
import grpc

from fixtures.common.v1 import common_pb2
from fixtures.kitchen.v1 import kitchen_pb2_grpc


def call(channel: grpc.Channel) -> None:
    stub = kitchen_pb2_grpc.KitchenServiceStub(channel)
    stub.GetKitchen(common_pb2.PageRequest())  # E: arg-type
