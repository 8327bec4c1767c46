"""Shared fixtures: where the binaries are, and generating code with ours and with protoc."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "proto"
SUPPORT = Path(__file__).resolve().parent / "support"

# The fixture files that use every proto3 feature (keywords.proto is separate because
# protoc's gRPC plugin writes invalid Python for it; see test_keywords.py).
KITCHEN_FILES = [
    "fixtures/kitchen/v1/kitchen.proto",
    "fixtures/common/v1/common.proto",
    "fixtures/options/v1/options.proto",
]


def binary(env_var: str, name: str) -> Path:
    path = Path(os.environ.get(env_var, REPO / "target" / "debug" / name))
    if not path.exists():
        pytest.fail(f"{path} does not exist: run `cargo build --workspace --bins` (or set {env_var})")
    return path


@pytest.fixture(scope="session")
def codegen_bin() -> Path:
    return binary("MLBRIDGE_CODEGEN", "mlbridge-codegen")


@pytest.fixture(scope="session")
def engine_bin() -> Path:
    return binary("MLBRIDGE_ENGINE", "mlbridge")


@dataclass(frozen=True)
class Outputs:
    ours: Path
    theirs: Path
    protobuf_version: str


def run(args: list[str | os.PathLike[str]], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Runs a command, failing the test with its output if it fails."""
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        pytest.fail(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result  # type: ignore[no-any-return]


def protoc(out: Path, include: Path, files: list[str], *flags: str) -> None:
    """grpcio-tools' protoc: the reference implementation."""
    out.mkdir(parents=True, exist_ok=True)
    plugin_path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{include}", *[f"{flag}={out}" for flag in flags], *files],
        env={**os.environ, "PATH": plugin_path},
    )


def protoc_python_version(pb2_file: Path) -> str:
    match = re.search(r"^# Protobuf Python Version: (\S+)$", pb2_file.read_text(), re.M)
    assert match, f"no version line in {pb2_file}"
    return match.group(1)


def protoc_grpc_version(pb2_grpc_file: Path) -> str:
    match = re.search(r"^GRPC_GENERATED_VERSION = '(\S+)'$", pb2_grpc_file.read_text(), re.M)
    assert match, f"no version check in {pb2_grpc_file}"
    return match.group(1)


def generate_both(codegen: Path, tmp: Path, include: Path, files: list[str]) -> Outputs:
    """Generates Python code for `files` with protoc and with ours, at protoc's runtime and
    grpcio versions."""
    theirs, ours = tmp / "theirs", tmp / "ours"
    protoc(theirs, include, files, "--python_out", "--grpc_python_out")
    version = protoc_python_version(theirs / files[0].replace(".proto", "_pb2.py"))
    grpc_version = protoc_grpc_version(theirs / files[0].replace(".proto", "_pb2_grpc.py"))
    run(
        [
            codegen,
            "-I",
            include,
            "--python-out",
            ours,
            "--protobuf-version",
            version,
            "--grpc-version",
            grpc_version,
            *files,
        ]
    )
    return Outputs(ours=ours, theirs=theirs, protobuf_version=version)


def python_in(root: Path, script: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Runs `script` in a fresh interpreter whose imports resolve under `root` first.

    Each side's generated code gets its own process: both register the same file names in
    the default descriptor pool, which refuses duplicates.
    """
    environment = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
    return run([sys.executable, script, *args], env=environment, timeout=120).stdout
