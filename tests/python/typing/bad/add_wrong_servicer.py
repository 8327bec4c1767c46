# Expected: add_<Service>Servicer_to_server takes that service's servicer.
#   error: Argument 1 to "add_KitchenServiceServicer_to_server" has incompatible type "KeywordServiceServicer"; expected "KitchenServiceServicer"  [arg-type]
import grpc

from fixtures.keywords.v1 import keywords_pb2_grpc
from fixtures.kitchen.v1 import kitchen_pb2_grpc


def register(server: grpc.Server, servicer: keywords_pb2_grpc.KeywordServiceServicer) -> None:
    kitchen_pb2_grpc.add_KitchenServiceServicer_to_server(servicer, server)  # E: arg-type
