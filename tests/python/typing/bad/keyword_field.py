# Expected: a field named like a Python keyword (`from`) is not an attribute: use getattr().
#   error: "Keywords" has no attribute "from_"  [attr-defined]
from fixtures.keywords.v1 import keywords_pb2

print(keywords_pb2.Keywords().from_)  # E: attr-defined
