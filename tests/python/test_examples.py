"""The examples in examples/python run end to end against a real engine."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO
from sdk_engine import address, engine  # noqa: F401


def run_example(name: str, engine_address: str) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / name), engine_address], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_python_orchestrated_example(address: str) -> None:
    out = run_example("orchestrated.py", address)
    assert "refused: variable `temperature`: 3.5 is above the maximum 2" in out
    assert "after another client's write: temperature = 0.2" in out
    assert "watched updates (version, value): [(5, 1.0), (6, 1.1), (7, 1.2)]" in out
    assert "tools.add(a=2, b=3.5) = 5.5" in out
    assert "tools.count.stream(to=4) = [0, 1, 2, 3]" in out
    assert "ToolError from Rust: tool `fail` failed" in out


def test_ping_example(address: str) -> None:
    assert "echoed 'hello from Python'" in run_example("ping.py", address)
