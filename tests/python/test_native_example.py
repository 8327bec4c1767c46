"""examples/control-plane runs end to end against a real engine with Python workers (the
third part of `cargo xtask demo`), so that it cannot rot."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO
from sdk_engine import RunningEngine, pool  # noqa: F401


def test_the_control_plane_example_tunes_dspy_and_sklearn(pool: RunningEngine) -> None:  # noqa: F811
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "control-plane" / "tune.py"), pool.address],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    # Progress while running: a line per trial of each run.
    assert len(re.findall(r"^  trial +\d+ .*-> score", out, re.M)) == 24 + 16, out
    # The tables and the best values.
    assert "DSPy Predict: 24 trials (24 complete, 0 failed, 0 timed out), finished with apply_best" in out
    assert "scikit-learn LogisticRegression: 16 trials (16 complete" in out
    assert len(re.findall(r"^ +trial +state +", out, re.M)) == 2
    assert len(re.findall(r"best score [0-9.]+ \(trial \d+\); the session now has", out)) == 2
    assert re.search(r"predict -> echo\(model=mlbridge/echo, temperature=", out)
    assert "from optimizer:" in out
