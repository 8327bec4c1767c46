# Expected: a servicer method returns its response message.
#   error: Return type "PageRequest" of "GetKitchen" incompatible with return type "Kitchen | Awaitable[Kitchen]" in supertype "...KitchenServiceServicer"  [override]
import grpc

from fixtures.common.v1 import common_pb2
from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc


class Servicer(kitchen_pb2_grpc.KitchenServiceServicer):
    def GetKitchen(  # E: override
        self, request: kitchen_pb2.KitchenRequest, context: grpc.ServicerContext
    ) -> common_pb2.PageRequest:
        return common_pb2.PageRequest()
