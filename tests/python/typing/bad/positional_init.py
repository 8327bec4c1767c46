# Expected: message constructors take keyword arguments only.
#   error: Too many positional arguments for "PageRequest"  [call-arg]
from fixtures.common.v1 import common_pb2

common_pb2.PageRequest(10)  # E: call-arg
