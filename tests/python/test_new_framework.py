"""A new framework by regeneration: this test writes a manifest and a small Python module
of its own into a temporary folder, runs the generator CLI, and shows that the Python output
imports and runs through a worker and that the Rust output compiles and runs against the
same engine. No project file is touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, run
from sdk_engine import RunningEngine, start_engine, worker_env

from mlbridge import ConstraintViolation, FrameworkError, SessionContext, VariableType, bind

MANIFEST = """
[framework]
id = "textstats"
implementation = "textstats_impl"
description = "Word statistics, a framework of the test's own."

[[operation]]
name = "count_words"
kind = "function"
description = "Counts the words of `text` that have at least `min_length` letters."

[[operation.parameter]]
name = "text"
type = "string"
required = true

[[operation.parameter]]
name = "min_length"
type = "integer"
bindable = true
default = 1
constraints = { min = 1, max = 100 }

[[operation.result]]
name = "count"
type = "integer"

[[operation.result]]
name = "longest"
type = "string"

[[tool]]
name = "textstats_shout"
function = "shout"
returns = "string"

[[tool.parameter]]
name = "text"
type = "string"
required = true
"""

IMPLEMENTATION = '''
"""The implementation the generated dispatch calls."""
from typing import Any

def count_words(call: Any, *, text: str, min_length: int) -> dict[str, object]:
    if text == "explode":
        raise ZeroDivisionError("the test asked for it")
    words = [w for w in text.split() if len(w) >= min_length]
    return {"count": len(words), "longest": max(words, key=len, default="")}

def shout(call: Any, *, text: str) -> str:
    return text.upper() + "!"
'''

RUST_MAIN = """
//! Calls the generated `textstats` client against the engine given as argument.
mod generated {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../rust/mlbridge_adapters.rs"));
}

use mlbridge::adapters::bind;
use mlbridge::adapters::pb::{Constraints, VariableType};

#[tokio::main]
async fn main() -> mlbridge::Result<()> {
    let address = std::env::args().nth(1).expect("address");
    let session = mlbridge::Client::connect(&address).await?.session().await?;
    session.register("min_len", VariableType::Integer, 4i64, Constraints::default()).await?;
    let out = generated::textstats::CountWords::new("a bb cccc ddddd")
        .min_length(bind("min_len"))
        .call(&session)
        .await?;
    println!("count={} longest={}", out.count, out.longest);
    Ok(())
}
"""


@pytest.fixture(scope="module")
def generated(codegen_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("new-framework")
    (root / "adapters").mkdir()
    (root / "adapters" / "textstats.toml").write_text(MANIFEST)
    (root / "impl").mkdir()
    (root / "impl" / "textstats_impl.py").write_text(IMPLEMENTATION)
    run(
        [
            codegen_bin,
            "--manifests",
            root / "adapters",
            "--python-out",
            root / "python",
            "--rust-out",
            root / "rust",
            "--adapters-package",
            "textstats_adapters",
        ]
    )
    return root


@pytest.fixture(scope="module")
def engine(engine_bin: Path, generated: Path) -> Iterator[RunningEngine]:
    path = os.pathsep.join([str(generated / "python"), str(generated / "impl"), os.environ.get("PYTHONPATH", "")])
    running = start_engine(
        engine_bin, "--workers", "1", "--adapter", "textstats_adapters.textstats", env=worker_env(PYTHONPATH=path)
    )
    yield running
    running.stop()


def test_the_generator_wrote_the_python_and_rust_outputs(generated: Path) -> None:
    files = sorted(str(p.relative_to(generated)) for p in (generated / "python").rglob("*.py"))
    assert files == [
        "python/textstats_adapters/__init__.py",
        "python/textstats_adapters/textstats/__init__.py",
        "python/textstats_adapters/textstats/dispatch.py",
        "python/textstats_adapters/textstats/proxy.py",
    ]
    assert "pub mod textstats" in (generated / "rust" / "mlbridge_adapters.rs").read_text()


def test_the_python_output_imports_and_runs_through_a_worker(
    generated: Path, engine: RunningEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(generated / "python"))
    from textstats_adapters.textstats import Textstats  # type: ignore[import-not-found]

    with SessionContext(engine.address) as ctx:
        ctx.register_variable("min_len", VariableType.INTEGER, 3)
        result = Textstats(ctx).count_words("a bb ccc dddd", min_length=bind("min_len"))
        assert (result.count, result.longest) == (2, "dddd")
        assert result.operation.bindings["min_length"].name == "min_len"
        ctx.set_variable("min_len", 1)
        assert Textstats(ctx).count_words("a bb ccc dddd", min_length=bind("min_len")).count == 4
        # The manifest's constraints are enforced for the new framework too.
        with pytest.raises(ConstraintViolation, match="min_length"):
            Textstats(ctx).count_words("a", min_length=0)
        assert ctx.tools.textstats_shout(text="hi") == "HI!"
        # A Python exception in the framework reaches the caller with its type and traceback.
        with pytest.raises(FrameworkError) as raised:
            Textstats(ctx).count_words("explode")
        assert raised.value.remote_type == "ZeroDivisionError"
        assert "textstats_impl.py" in raised.value.remote_traceback
        assert raised.value.origin.startswith("worker:")
        assert [a.framework for a in ctx.describe_adapters()] == ["textstats"]


def test_the_rust_output_compiles_and_runs(generated: Path, engine: RunningEngine) -> None:
    crate = generated / "client"
    (crate / "src").mkdir(parents=True)
    (crate / "Cargo.toml").write_text(
        textwrap.dedent(
            f"""
            [package]
            name = "textstats-client"
            version = "0.1.0"
            edition = "2024"
            publish = false

            [dependencies]
            mlbridge = {{ path = "{REPO / "runtime"}" }}
            mlbridge-client = {{ path = "{REPO / "runtime/client"}" }}
            tokio = {{ version = "1", features = ["macros", "rt-multi-thread"] }}

            [workspace]

            [profile.dev.package."*"]
            opt-level = 1
            """
        )
    )
    (crate / "src" / "main.rs").write_text(RUST_MAIN)
    # The project's lock file pins the same dependency versions, so the shared target folder
    # already holds them and only this crate is compiled.
    shutil.copy(REPO / "Cargo.lock", crate / "Cargo.lock")
    cargo = os.environ.get("CARGO", "cargo")
    env = {**os.environ, "CARGO_TARGET_DIR": str(REPO / "target")}
    run([cargo, "build", "--quiet", "--offline", "--manifest-path", crate / "Cargo.toml"], env=env)
    binary = REPO / "target" / "debug" / "textstats-client"
    output = subprocess.run([binary, engine.address], capture_output=True, text=True, timeout=60)
    assert output.returncode == 0, output.stderr
    assert output.stdout.strip() == "count=2 longest=ddddd"


def test_mypy_checks_the_implementation_against_the_manifest(generated: Path, tmp_path: Path) -> None:
    """The generated dispatch module states the signature each implementation function must
    have; mypy --strict accepts the right one and names the function when it drifts."""

    def mypy(implementation: str) -> subprocess.CompletedProcess[str]:
        shutil.copy(generated / "impl" / "textstats_impl.py", tmp_path / "textstats_impl.py")
        (tmp_path / "textstats_impl.py").write_text(implementation)
        path = [generated / "python", tmp_path, REPO / "runtime" / "python", REPO / "generated" / "python"]
        env = {**os.environ, "MYPYPATH": os.pathsep.join(str(p) for p in path)}
        return subprocess.run(
            [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "textstats_adapters"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )

    good = mypy(IMPLEMENTATION)
    assert good.returncode == 0, good.stdout + good.stderr
    drifted = mypy(IMPLEMENTATION.replace("min_length", "minimum"))  # a renamed keyword
    assert drifted.returncode == 1, drifted.stdout
    assert "dispatch.py" in drifted.stdout and "CountWordsFunction" in drifted.stdout, drifted.stdout
