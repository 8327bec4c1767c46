"""`--python-package NAME` places modules inside a package whose imports resolve there."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FIXTURES, KITCHEN_FILES, SUPPORT, python_in, run


def test_modules_import_from_inside_the_package(codegen_bin: Path, tmp_path: Path) -> None:
    run([codegen_bin, "-I", FIXTURES, "--python-out", tmp_path, "--python-package", "acme.protos", *KITCHEN_FILES])
    package = tmp_path / "acme" / "protos"
    assert (package / "py.typed").exists()
    # The parent package is the user's (here an implicit namespace package): left alone.
    assert not (tmp_path / "acme" / "__init__.py").exists()
    assert (package / "fixtures" / "kitchen" / "v1" / "__init__.py").exists()
    grpc_module = (package / "fixtures/kitchen/v1/kitchen_pb2_grpc.py").read_text()
    assert "from acme.protos.fixtures.kitchen.v1 import kitchen_pb2 as" in grpc_module
    modules = json.loads(python_in(tmp_path, SUPPORT / "package_import.py"))
    assert modules == {
        "kitchen": "acme.protos.fixtures.kitchen.v1.kitchen_pb2",
        "page": "acme.protos.fixtures.common.v1.common_pb2",
    }


def test_without_a_package_the_layout_is_protocs(codegen_bin: Path, tmp_path: Path) -> None:
    run([codegen_bin, "-I", FIXTURES, "--python-out", tmp_path, *KITCHEN_FILES])
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py")) == [
        "fixtures/common/v1/common_pb2.py",
        "fixtures/common/v1/common_pb2_grpc.py",
        "fixtures/kitchen/v1/kitchen_pb2.py",
        "fixtures/kitchen/v1/kitchen_pb2_grpc.py",
        "fixtures/options/v1/options_pb2.py",
        "fixtures/options/v1/options_pb2_grpc.py",
    ]
