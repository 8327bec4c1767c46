# Expected: WhichOneof("other") returns "number" or "real" (or None), never "text".
#   error: Non-overlapping equality check (left operand type: "Literal['number', 'real'] | None", right operand type: "Literal['text']")  [comparison-overlap]
from fixtures.kitchen.v1 import kitchen_pb2

if kitchen_pb2.Kitchen().WhichOneof("other") == "text":  # E: comparison-overlap
    pass
