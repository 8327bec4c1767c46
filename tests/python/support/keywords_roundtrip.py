"""Serves and calls KeywordService, whose methods are named `Match`, `async` and `None`,
through our generated code: they are reachable as `Match`, `async_` and `None_`.
Prints `OK` on success."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc

from fixtures.keywords.v1 import keywords_pb2, keywords_pb2_grpc  # type: ignore[import-not-found]

TypeMessage = getattr(keywords_pb2, "type")


class Keywords(keywords_pb2_grpc.KeywordServiceServicer):  # type: ignore[misc]
    def Match(self, request: Any, context: Any) -> Any:
        reply = keywords_pb2.Keywords()
        setattr(reply, "from", getattr(request, "from") + "!")
        reply.type = request.type
        return reply

    def async_(self, request: Any, context: Any) -> Any:
        reply = TypeMessage()
        setattr(reply, "in", getattr(request, "in") * 2)
        return reply

    def None_(self, request: Any, context: Any) -> Any:
        reply = TypeMessage()
        setattr(reply, "in", "none:" + getattr(request, "None"))
        return reply


server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
keywords_pb2_grpc.add_KeywordServiceServicer_to_server(Keywords(), server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
try:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = keywords_pb2_grpc.KeywordServiceStub(channel)
        request = keywords_pb2.Keywords(**{"from": "a", "type": "t", "None": "n"})
        reply = stub.Match(request, timeout=10)
        assert (getattr(reply, "from"), reply.type) == ("a!", "t"), reply
        assert getattr(stub.async_(TypeMessage(**{"in": "ab"}), timeout=10), "in") == "abab"
        assert getattr(stub.None_(request, timeout=10), "in") == "none:n"
        assert keywords_pb2.KeywordEnum.Value("None") == 1
    print("OK")
finally:
    server.stop(grace=None)
