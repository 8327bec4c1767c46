"""Names that are Python keywords (`async`, `None`, `from`, ...) produce valid, usable code."""

from __future__ import annotations

import py_compile
from pathlib import Path

import pytest

from conftest import FIXTURES, SUPPORT, protoc, python_in, run

KEYWORDS = "fixtures/keywords/v1/keywords.proto"


def test_keyword_methods_are_served_and_called(codegen_bin: Path, tmp_path: Path) -> None:
    run([codegen_bin, "-I", FIXTURES, "--python-out", tmp_path, KEYWORDS])
    for generated in tmp_path.rglob("*.py"):
        py_compile.compile(str(generated), doraise=True)
    assert python_in(tmp_path, SUPPORT / "keywords_roundtrip.py").strip() == "OK"


def test_protoc_output_for_the_same_file_is_not_valid_python(tmp_path: Path) -> None:
    """Why we escape: the reference plugin writes `self.async = ...`, a syntax error. If a
    future grpcio-tools fixes this, this test tells us to revisit the escaping."""
    protoc(tmp_path, FIXTURES, [KEYWORDS], "--grpc_python_out")
    with pytest.raises(py_compile.PyCompileError):
        py_compile.compile(str(tmp_path / "fixtures/keywords/v1/keywords_pb2_grpc.py"), doraise=True)
