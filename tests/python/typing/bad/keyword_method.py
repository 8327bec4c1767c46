# Expected: an RPC named like a Python keyword (`None`) is the attribute `None_`, as in
# _pb2_grpc.py, and is typed like any other (it takes a Keywords request).
#   error: Argument 1 to "__call__" of "UnaryUnaryMultiCallable" has incompatible type "type"; expected "Keywords"  [arg-type]
import grpc

from fixtures.keywords.v1 import keywords_pb2, keywords_pb2_grpc


def call(channel: grpc.Channel) -> None:
    stub = keywords_pb2_grpc.KeywordServiceStub(channel)
    stub.None_(keywords_pb2.type())  # E: arg-type
