# Expected: HasField takes only fields with presence (messages, oneofs and their members,
# proto3 `optional`); `id` is a plain proto3 string.
#   error: Argument 1 to "HasField" of "Kitchen" has incompatible type "Literal['id']"; expected "Literal[...]"  [arg-type]
from fixtures.kitchen.v1 import kitchen_pb2

kitchen_pb2.Kitchen().HasField("id")  # E: arg-type
