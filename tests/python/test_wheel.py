"""The wheel that `cargo xtask wheel` builds, installed with pip into a fresh virtual
environment: with no ``MLBRIDGE_ENGINE``, nothing of this repository on ``sys.path`` and no
``mlbridge`` on ``PATH``, ``mlbridge.Engine.start()`` runs the engine the wheel brought, a
session works against it, and no engine process is left afterwards.

The wheel is ``$MLBRIDGE_WHEEL``, else the newest ``target/wheels/mlbridge-*.whl``
(``cargo xtask test`` builds it first with ``cargo xtask wheel --debug``). The install takes
grpcio and protobuf from PyPI or pip's cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _wheel() -> Path:
    named = os.environ.get("MLBRIDGE_WHEEL")
    if named:
        return Path(named).resolve()
    wheels = sorted((REPO / "target" / "wheels").glob("mlbridge-*.whl"), key=lambda p: p.stat().st_mtime)
    if not wheels:
        pytest.fail("no wheel in target/wheels: run `cargo xtask wheel --debug` (or set MLBRIDGE_WHEEL)")
    return wheels[-1]


def _clean_env(venv: Path) -> dict[str, str]:
    """An environment that reaches nothing of the repository: no MLBRIDGE_* variables, no
    PYTHONPATH, and on PATH only the venv and the system folders."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLBRIDGE_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), "/usr/local/bin", "/usr/bin", "/bin"])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with the wheel (and its dependencies) installed."""
    wheel = _wheel()
    root = tmp_path_factory.mktemp("wheel-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        cwd=root,
        env=_clean_env(venv),
    )
    if install.returncode != 0:
        pytest.fail(f"pip install {wheel.name} failed:\n{install.stdout}\n{install.stderr}")
    yield venv


def _run(venv: Path, script: str) -> dict[str, object]:
    """Runs `script` with the venv's Python from a folder outside the repository; returns
    the JSON object it prints last."""
    folder = venv.parent / "scripts"
    folder.mkdir(exist_ok=True)
    path = folder / "script.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [str(venv / "bin" / "python"), str(path)], capture_output=True, text=True, cwd=folder, env=_clean_env(venv)
    )
    assert done.returncode == 0, f"script failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _engines_running_from(folder: Path) -> list[int]:
    """Pids of live (not zombie) processes whose executable lies under `folder`."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.readlink(proc / "exe")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if exe.startswith(str(folder)) and state != "Z":
            pids.append(int(proc.name))
    return pids


def test_the_wheel_is_a_platform_wheel_with_the_engine_and_the_packages() -> None:
    wheel = _wheel()
    assert wheel.name.startswith("mlbridge-") and "-py3-none-" in wheel.name and not wheel.name.endswith("-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        engine = archive.getinfo("mlbridge/bin/mlbridge")
        assert (engine.external_attr >> 16) & 0o111, "the engine must be executable"
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        record = archive.read(f"{dist_info}/RECORD").decode()
    for needed in ("mlbridge/__init__.py", "mlbridge/engine.py", "mlbridge_proto/ml_bridge_pb2.py", "mlbridge_adapters/__init__.py"):
        assert needed in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "Requires-Dist: grpcio" in metadata and "Requires-Dist: protobuf" in metadata
    # The generated package travels inside the wheel, so it is no dependency.
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert not any("mlbridge-proto" in line for line in requires), requires
    assert {line.split(",")[0] for line in record.splitlines()} == names


@pytest.mark.skipif(not Path("/proc/self/exe").exists(), reason="process listing reads /proc")
def test_a_session_runs_against_the_engine_the_wheel_brought(venv: Path) -> None:
    result = _run(
        venv,
        """
        import json, os, sys
        import mlbridge
        from mlbridge.engine import PACKAGED_ENGINE

        assert "MLBRIDGE_ENGINE" not in os.environ
        with mlbridge.Engine.start() as engine:
            with mlbridge.SessionContext(engine.address) as ctx:
                ctx.register_variable("temperature", "float", 0.5, min=0.0, max=2.0)
                ctx.set_variable("temperature", 0.75)
                value = ctx.get_variable("temperature")
            running_while_open = engine.running
        print(json.dumps({
            "value": value,
            "address": engine.address,
            "pid": engine.pid,
            "binary": str(engine.binary),
            "packaged": str(PACKAGED_ENGINE),
            "sdk": mlbridge.__file__,
            "prefix": sys.prefix,
            "running_while_open": running_while_open,
            "running_after": engine.running,
            "returncode": engine.returncode,
        }))
        """,
    )
    assert result["value"] == 0.75
    assert str(result["address"]).startswith("unix:")
    assert result["binary"] == result["packaged"]
    assert str(result["sdk"]).startswith(str(venv)) and not str(result["sdk"]).startswith(str(REPO))
    assert result["running_while_open"] is True and result["running_after"] is False
    assert result["returncode"] == 0
    assert _engines_running_from(venv) == []


@pytest.mark.skipif(not Path("/proc/self/exe").exists(), reason="process listing reads /proc")
def test_an_engine_left_running_stops_when_python_exits(venv: Path) -> None:
    result = _run(
        venv,
        """
        import atexit, json, os

        def report() -> None:
            # Registered before mlbridge's hook, so it runs after it.
            try:
                os.kill(engine.pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            print(json.dumps({"address": engine.address, "alive_after_atexit": alive}))

        atexit.register(report)

        import mlbridge

        engine = mlbridge.Engine.start(listen="127.0.0.1:0")
        """,
    )
    assert str(result["address"]).startswith("127.0.0.1:")
    assert result["alive_after_atexit"] is False
    assert _engines_running_from(venv) == []
