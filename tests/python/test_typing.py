"""The generated stubs type-check: `mypy --strict` accepts programs that use them correctly
and rejects programs that misuse them. Each bad sample marks the one line that must fail
with `# E: <error code>`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, KITCHEN_FILES, REPO, run

SAMPLES = Path(__file__).resolve().parent / "typing"
GOOD = sorted((SAMPLES / "good").glob("*.py"))
BAD = sorted((SAMPLES / "bad").glob("*.py"))


@pytest.fixture(scope="module")
def stubs(codegen_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stubs")
    files = [*KITCHEN_FILES, "fixtures/keywords/v1/keywords.proto"]
    run([codegen_bin, "-I", FIXTURES, "--python-out", out, *files])
    run([codegen_bin, "-I", REPO / "proto", "--python-out", out, "ml_bridge.proto"])
    return out


def mypy(stubs: Path, *targets: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYPYPATH": str(stubs)}
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *extra, *map(str, targets)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=stubs, timeout=600)


def test_generated_stubs_pass_strict_mypy(stubs: Path) -> None:
    result = mypy(stubs, *sorted(stubs.rglob("*.pyi")), extra=("--explicit-package-bases",))
    assert result.returncode == 0, result.stdout + result.stderr


def test_correct_programs_pass(stubs: Path) -> None:
    assert GOOD, "no good samples"
    result = mypy(stubs, *GOOD)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("sample", GOOD, ids=[p.stem for p in GOOD])
def test_correct_programs_run(stubs: Path, sample: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(stubs)}
    result = subprocess.run([sys.executable, str(sample)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_misuse_is_rejected_on_its_marked_line(stubs: Path) -> None:
    """One mypy run over every bad sample: each must have exactly one error, on the line
    marked `# E: code`, with that code."""
    assert len(BAD) >= 10
    result = mypy(stubs, *BAD)
    errors: dict[str, list[tuple[int, str]]] = {}
    for match in re.finditer(r"^(.+?\.py):(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.M):
        errors.setdefault(Path(match.group(1)).name, []).append((int(match.group(2)), match.group(3)))
    for sample in BAD:
        lines = sample.read_text().splitlines()
        marked = [(n + 1, line.rsplit("# E: ", 1)[1].strip()) for n, line in enumerate(lines) if "# E: " in line]
        assert len(marked) == 1, f"{sample.name} must mark exactly one line"
        assert errors.get(sample.name) == marked, f"{sample.name}: expected {marked}, mypy said {errors.get(sample.name)}\n{result.stdout}"
