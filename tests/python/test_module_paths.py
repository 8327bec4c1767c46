"""Output paths and module names as protoc's, for any proto path: folders whose names hold
dots (`dot.com/`) and file names with dashes (`test-file.proto`) included."""

from __future__ import annotations

from pathlib import Path

from conftest import protoc, python_in, run

SERVICE = """syntax = "proto3";
package dotcom;
message M { int32 x = 1; }
service S { rpc Call(M) returns (M); }
"""

IMPORTER = """syntax = "proto3";
package user;
import "pkg/dot.com/test-file.proto";
message U { dotcom.M m = 1; }
"""

USE = """from pkg import user_pb2
from pkg.dot.com import test_file_pb2, test_file_pb2_grpc

message = user_pb2.U(m=test_file_pb2.M(x=7))
assert user_pb2.U.FromString(message.SerializeToString()).m.x == 7
assert test_file_pb2_grpc.SStub is not None
print("OK")
"""


def files_under(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def test_dotted_folders_and_dashed_names_land_where_protoc_puts_them(codegen_bin: Path, tmp_path: Path) -> None:
    include = tmp_path / "in"
    (include / "pkg/dot.com").mkdir(parents=True)
    (include / "pkg/dot.com/test-file.proto").write_text(SERVICE)
    (include / "pkg/user.proto").write_text(IMPORTER)
    files = ["pkg/dot.com/test-file.proto", "pkg/user.proto"]
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    protoc(theirs, include, files, "--python_out", "--grpc_python_out", "--mypy_out", "--mypy_grpc_out")
    run([codegen_bin, "-I", include, "--python-out", ours, *files])

    # Every file gets its gRPC module, services or not, as protoc's gRPC plugins write them.
    expected = files_under(theirs)
    assert {"pkg/dot/com/test_file_pb2.py", "pkg/user_pb2_grpc.py"} <= expected
    assert files_under(ours) == expected
    # The import protoc writes for the dependency names the same module.
    import_line = "from pkg.dot.com import test_file_pb2 as pkg_dot_dot_dot_com_dot_test__file__pb2"
    assert import_line in (theirs / "pkg/user_pb2.py").read_text()
    assert import_line in (ours / "pkg/user_pb2.py").read_text()

    script = tmp_path / "use.py"
    script.write_text(USE)
    assert python_in(ours, script).strip() == "OK"
