"""mypy-protobuf 5.1.0's own test suite on our output (issue 14).

The suite (tests/fixtures/mypy_protobuf, pinned: see its SOURCE.md) is run twice, the way its
`run_test.sh` runs it: once on what grpcio-tools' protoc and mypy-protobuf write for its 24
test protos (the reference, which must reproduce mypy-protobuf's own results here, so that
the comparison means something), once on what `mlbridge-codegen` writes for the same protos
and include folders. Both must give the same results: every proto accepted, every pytest
test passing, no mypy error on the positive typing tests, and on the negative typing tests
exactly the error lines `negative.py` marks as expected (`# E:3.8`), with the same messages.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

import grpc_tools
import pytest

from conftest import REPO, protoc_grpc_version, protoc_python_version, run

SUITE = REPO / "tests" / "fixtures" / "mypy_protobuf"
# protoc's include folder as grpcio-tools ships it (descriptor.proto with extension
# declarations among it), passed to both generators as run_test.sh passes protoc's.
PROTOC_INCLUDE = Path(grpc_tools.__file__).parent / "_proto"
# The modules run_test.sh type-checks: its positive tests, then the same with the negative.
POSITIVE = ["test.test_generated_mypy", "test.test_grpc_usage", "test.test_grpc_async_usage"]
NEGATIVE = ["test_negative.negative", *POSITIVE]
NEGATIVE_FILE = "test_negative/negative.py"

# Where our output deliberately differs from mypy-protobuf's, and why. None of it changes a
# result of the suite.
# - Our CLI writes `_pb2_grpc.py(i)` for every file (protoc's gRPC plugin does too, when
#   asked); run_test.sh asks for them only under testproto/grpc, so the others are set aside.
# - mypy-protobuf names deprecated classes in its own annotations, so mypy flags its stubs
#   (test_mypy_finds_nothing_wrong_inside_our_stubs).
# - A deprecation comment that would break a triple-quoted string keeps its text in ours
#   (escaped); mypy-protobuf falls back to its fixed sentence
#   (test_a_deprecation_comment_is_kept_whatever_it_holds).
# - A deprecated servicer method says what its stub method says (the comment on its
#   `deprecated` option); mypy-protobuf's takes the method's own comment instead.
# - In editions files mypy-protobuf lets HasField name repeated and map fields, which the
#   runtime refuses; ours do not (test_pyi_equivalence.THEIR_MISTAKES; the suite has none).


@dataclass
class Results:
    """What the suite says about one generator's output."""

    root: Path
    generated: list[str]
    pytest: dict[str, str]
    positive: list[str]
    negative: list[str]

    def negative_errors(self) -> set[int]:
        """Lines of negative.py on which mypy reported an error."""
        return {int(m.group(1)) for m in map(re.compile(rf"^{NEGATIVE_FILE}:(\d+): error:").match, self.negative) if m}

    def negative_lines(self) -> list[str]:
        """mypy's output about negative.py: errors and their notes, in order."""
        return [line for line in self.negative if line.startswith(f"{NEGATIVE_FILE}:")]


def protos() -> list[str]:
    return sorted(str(p.relative_to(SUITE / "proto")) for p in (SUITE / "proto").rglob("*.proto"))


def copy_suite(root: Path) -> Path:
    shutil.copytree(SUITE, root)
    return root / "test" / "generated"


def generate_theirs(out: Path) -> None:
    """run_test.sh's generation: messages and stubs for every proto, gRPC modules and stubs
    for those under testproto/grpc."""
    files = protos()
    grpc = [f for f in files if f.startswith("testproto/grpc/")]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={SUITE / 'proto'}"]
    run([*protoc, f"--python_out={out}", f"--mypy_out={out}", *files], env=env)
    run([*protoc, f"--grpc_python_out={out}", f"--mypy_grpc_out={out}", *grpc], env=env)


def generate_ours(out: Path, codegen: Path, reference: Path) -> None:
    """The same protos and include folders through our CLI, at the reference's runtime
    versions. Our CLI writes all four modules of every file; run_test.sh asks protoc for
    gRPC modules only under testproto/grpc, so the others are set aside to compare like
    with like (the suite counts the stubs it finds)."""
    sample = reference / "testproto" / "grpc" / "dummy_pb2"
    run(
        [
            codegen,
            "-I",
            SUITE / "proto",
            "-I",
            PROTOC_INCLUDE,
            "--python-out",
            out,
            "--protobuf-version",
            protoc_python_version(sample.with_name("dummy_pb2.py")),
            "--grpc-version",
            protoc_grpc_version(sample.with_name("dummy_pb2_grpc.py")),
            *protos(),
        ]
    )
    for module in out.rglob("*_pb2_grpc.py*"):
        if module.parent.relative_to(out).parts[:2] != ("testproto", "grpc"):
            module.unlink()


def mypy(root: Path, modules: list[str], *flags: str) -> list[str]:
    """run_test.sh's mypy call (the suite's pyproject.toml settings apply): output lines
    without the summary."""
    args = [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", os.devnull, *flags]
    args += [f"--python-version={sys.version_info.major}.{sys.version_info.minor}"]
    for module in modules:
        args += ["-m", module]
    env = {**os.environ, "MYPYPATH": str(root / "test" / "generated")}
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), f"mypy crashed:\n{done.stdout}\n{done.stderr}"
    return [line for line in done.stdout.splitlines() if line and not re.match(r"^(Found \d+ errors?|Success:)", line)]


def pytest_outcomes(root: Path) -> dict[str, str]:
    """run_test.sh's pytest call: test id -> passed / failed / error / skipped."""
    report = root / "pytest.xml"
    env = {**os.environ, "PYTHONPATH": str(root / "test" / "generated")}
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "test"]
    done = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert report.exists(), f"pytest did not run:\n{done.stdout}\n{done.stderr}"
    outcomes: dict[str, str] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = f"{child.tag}: {child.get('message', '')[:300]}"
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return outcomes


def results(root: Path) -> Results:
    generated = root / "test" / "generated"
    files = sorted(str(p.relative_to(generated)) for p in generated.rglob("*.py*") if p.name != "__init__.py")
    # The positive run reports deprecations as notes, as run_test.sh's does: only errors count.
    positive = [line for line in mypy(root, POSITIVE, "--report-deprecated-as-note") if ": error:" in line]
    return Results(root, files, pytest_outcomes(root), positive, mypy(root, NEGATIVE))


@pytest.fixture(scope="module")
def theirs(tmp_path_factory: pytest.TempPathFactory) -> Results:
    root = tmp_path_factory.mktemp("suite") / "theirs"
    generate_theirs(copy_suite(root))
    return results(root)


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory, codegen_bin: Path, theirs: Results) -> Results:
    root = tmp_path_factory.mktemp("suite") / "ours"
    generate_ours(copy_suite(root), codegen_bin, theirs.root / "test" / "generated")
    return results(root)


def expected_negative_errors() -> set[int]:
    """The lines negative.py marks as expected to fail type checking (the suite's own
    `test_generate_negative_matches` reads the same marker)."""
    lines = (SUITE / NEGATIVE_FILE).read_text().splitlines()
    return {number for number, line in enumerate(lines, 1) if "#" in line and "E:3.8" in line}


def test_the_reference_reproduces_mypy_protobufs_own_results(theirs: Results) -> None:
    """Without this the comparison below would mean nothing: the pinned tools here give
    mypy-protobuf's published results on its own output."""
    assert len(expected_negative_errors()) == 108
    assert all(outcome == "passed" for outcome in theirs.pytest.values()), theirs.pytest
    assert len(theirs.pytest) >= 30
    assert theirs.positive == []
    assert theirs.negative_errors() == expected_negative_errors()


def test_every_proto_is_accepted_and_written_where_protoc_writes_it(theirs: Results, ours: Results) -> None:
    assert ours.generated == theirs.generated


def test_their_pytest_suite_passes_on_our_output(theirs: Results, ours: Results) -> None:
    failing = {test: outcome for test, outcome in ours.pytest.items() if outcome != "passed"}
    assert failing == {}
    assert sorted(ours.pytest) == sorted(theirs.pytest)


def test_their_positive_typing_tests_are_clean_on_our_stubs(ours: Results) -> None:
    assert ours.positive == []


def test_their_negative_typing_tests_fail_exactly_where_expected(ours: Results) -> None:
    expected = expected_negative_errors()
    found = ours.negative_errors()
    assert sorted(expected - found) == [], "expected errors not reproduced"
    assert sorted(found - expected) == [], "errors on lines not marked as expected"


def test_their_negative_typing_tests_say_what_mypy_protobufs_stubs_make_it_say(theirs: Results, ours: Results) -> None:
    """The same messages, errors and notes, line by line, on negative.py."""
    assert ours.negative_lines() == theirs.negative_lines()


def test_mypy_finds_nothing_wrong_inside_our_stubs(ours: Results) -> None:
    """mypy-protobuf's stubs name their own deprecated classes in annotations, so with the
    suite's settings mypy reports 30 deprecation errors inside them; ours name those
    classes through aliases it is told not to flag, and get none."""
    inside = [line for line in ours.negative if line.startswith("test/generated/")]
    assert inside == []


def test_a_deprecation_comment_is_kept_whatever_it_holds(ours: Results) -> None:
    stub = (ours.root / "test" / "generated" / "testproto" / "test_pb2.pyi").read_text()
    decorator = '@_typing_extensions.deprecated("This message is deprecated\\n\\"\\"\\" triple quotes in comment")'
    assert f"{decorator}\n@_typing.final\nclass DeprecatedMessageBadComment(" in stub
