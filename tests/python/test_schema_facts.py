"""Facts written once in the proto reach Python with no hand edit: a new error kind and a
new dtype added to a copy of `ml_bridge.proto` appear in the generated facts module, with
their gRPC code, exception class, docstring, name and item size."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc

from conftest import REPO
from mlbridge_proto import ml_bridge_facts as facts
from mlbridge_proto import ml_bridge_pb2 as pb

NEW_KIND = """\
  // The caller used up its quota; try again after the window resets.
  ERROR_KIND_QUOTA_EXCEEDED = 99 [(mlbridge.options.grpc_code) = RESOURCE_EXHAUSTED, (mlbridge.options.retryable) = true];
"""
NEW_DTYPE = """\
  DTYPE_FLOAT8_E4M3 = 99 [(mlbridge.options.short_name) = "float8_e4m3", (mlbridge.options.item_size) = 1];
"""


def insert_after(text: str, anchor: str, addition: str) -> str:
    """`text` with `addition` inserted on the line after the one holding `anchor`."""
    at = text.index(anchor)
    end = text.index("\n", at) + 1
    return text[:end] + addition + text[end:]


def test_new_error_kind_and_dtype_appear_in_python(codegen_bin: Path, tmp_path: Path) -> None:
    protos = tmp_path / "proto"
    shutil.copytree(REPO / "proto", protos)
    schema = protos / "ml_bridge.proto"
    text = schema.read_text()
    text = insert_after(text, "ERROR_KIND_LOCK_NOT_HELD = 27", NEW_KIND)
    text = insert_after(text, "DTYPE_COMPLEX128 = 15", NEW_DTYPE)
    schema.write_text(text)
    out = tmp_path / "py"
    out.mkdir()
    subprocess.run(
        [str(codegen_bin), "-I", str(protos), "--python-out", str(out),
         "ml_bridge_options.proto", "ml_bridge.proto"],
        check=True,
    )
    probe = textwrap.dedent(
        """
        import grpc
        import ml_bridge_facts as f

        kind = f.ErrorKind.QUOTA_EXCEEDED
        assert int(kind) == 99, int(kind)
        assert kind.grpc_code == grpc.StatusCode.RESOURCE_EXHAUSTED, kind.grpc_code
        assert kind.retryable is True
        cls = f.ERROR_KIND_CLASSES[kind]
        assert cls is f.QuotaExceeded and issubclass(cls, f.BridgeError), cls
        assert cls.__doc__.split("\\n")[0].startswith("The caller used up its quota"), cls.__doc__
        assert f.ERROR_KIND_GRPC_CODES[kind] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert f.QuotaExceeded("over").kind is kind
        dtype = f.Dtype("float8_e4m3")
        assert dtype.item_size == 1 and f.DTYPE_ITEM_SIZES[dtype] == 1
        assert f.Dtype.from_proto(dtype.to_proto()) is dtype
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=out, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_checked_in_facts_follow_the_proto() -> None:
    """Every ErrorKind and Dtype value of the real schema has its generated counterpart."""
    kinds = {value.number for value in pb.ErrorKind.DESCRIPTOR.values}
    assert kinds == {int(kind) for kind in facts.ErrorKind}
    assert set(facts.ERROR_KIND_CLASSES) == set(facts.ErrorKind)
    assert facts.ErrorKind.WORKER_UNAVAILABLE.retryable
    assert not facts.ErrorKind.CONSTRAINT_VIOLATION.retryable
    assert facts.ErrorKind.VERSION_CONFLICT.grpc_code == grpc.StatusCode.ABORTED
    dtypes = {value.number for value in pb.Dtype.DESCRIPTOR.values} - {pb.DTYPE_UNSPECIFIED}
    assert dtypes == {int(dtype.to_proto()) for dtype in facts.Dtype}
    assert facts.Dtype("complex128").item_size == 16
    assert facts.VariableType("tensor").to_proto() == pb.VARIABLE_TYPE_TENSOR
