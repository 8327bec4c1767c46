"""The baseline for `cargo xtask bench engine`: what a user might write instead of the
engine, a plain grpcio server keeping variables in a dict. It speaks the same MLBridge
protocol (sessions, RegisterVariable, GetVariable, SetVariable) so the same clients can
measure both. Prints `PORT <n>` once serving; stops when stdin closes.
"""

from __future__ import annotations

import sys
import threading
import uuid
from concurrent import futures

import grpc

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc


class DictBridge(pb_grpc.MLBridgeServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[str, dict[str, pb.Variable]] = {}

    def InitializeSession(self, request: pb.InitializeSessionRequest, context: grpc.ServicerContext) -> pb.InitializeSessionResponse:
        session_id = request.session_id or str(uuid.uuid4())
        with self.lock:
            created = session_id not in self.sessions
            self.sessions.setdefault(session_id, {})
        return pb.InitializeSessionResponse(session=pb.Session(session_id=session_id), created=created)

    def RegisterVariable(self, request: pb.RegisterVariableRequest, context: grpc.ServicerContext) -> pb.RegisterVariableResponse:
        variable = pb.Variable(name=request.name, type=request.type, value=request.initial_value, version=1)
        with self.lock:
            self.sessions[request.session_id][request.name] = variable
        return pb.RegisterVariableResponse(variable=variable)

    def GetVariable(self, request: pb.GetVariableRequest, context: grpc.ServicerContext) -> pb.GetVariableResponse:
        with self.lock:
            variable = self.sessions[request.session_id][request.name]
        return pb.GetVariableResponse(variable=variable)

    def SetVariable(self, request: pb.SetVariableRequest, context: grpc.ServicerContext) -> pb.SetVariableResponse:
        with self.lock:
            variable = self.sessions[request.session_id][request.name]
            variable.value.CopyFrom(request.value)
            variable.version += 1
        return pb.SetVariableResponse(variable=variable)


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb_grpc.add_MLBridgeServicer_to_server(DictBridge(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    sys.stdin.read()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
