# Expected: a message without presence fields accepts no HasField argument at all.
#   error: Argument 1 to "HasField" of "PageRequest" has incompatible type "str"; expected "Never"  [arg-type]
from fixtures.common.v1 import common_pb2

common_pb2.PageRequest().HasField("page_size")  # E: arg-type
