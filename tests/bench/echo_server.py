"""The floor of `cargo xtask bench control-plane`: a minimal Python grpcio unary echo, served
the way the SDK's callback server is (the same `Callback` service and message, a grpcio
server on a thread pool of 16 with the same channel options), but with nothing behind it:
`ExecuteCallback` answers the request's metadata back. Prints `PORT <n>` once serving;
stops when stdin closes.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc


class Echo(pb_grpc.CallbackServicer):
    def ExecuteCallback(self, request: pb.ExecuteCallbackRequest, context: grpc.ServicerContext) -> pb.ExecuteCallbackResponse:
        return pb.ExecuteCallbackResponse(metadata=request.metadata)


def main() -> None:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=16),
        options=[("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)],
    )
    pb_grpc.add_CallbackServicer_to_server(Echo(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
