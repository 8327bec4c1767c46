# Expected: servicer methods are abstract in the stubs: implement every RPC.
#   error: Cannot instantiate abstract class "Partial" with abstract attributes "Chat", "ListKitchens" and "UploadKitchens"  [abstract]
import grpc

from fixtures.kitchen.v1 import kitchen_pb2, kitchen_pb2_grpc


class Partial(kitchen_pb2_grpc.KitchenServiceServicer):
    def GetKitchen(
        self, request: kitchen_pb2.KitchenRequest, context: grpc.ServicerContext
    ) -> kitchen_pb2.Kitchen:
        return kitchen_pb2.Kitchen()


Partial()  # E: abstract
