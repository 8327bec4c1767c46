# Expected: a proto3 scalar without presence does not take None (an `optional` or oneof one would).
#   error: Argument "page_size" to "PageRequest" has incompatible type "None"; expected "int"  [arg-type]
from fixtures.common.v1 import common_pb2

common_pb2.PageRequest(page_size=None)  # E: arg-type
