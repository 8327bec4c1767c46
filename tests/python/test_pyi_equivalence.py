"""Our `_pb2.pyi` against mypy-protobuf's for the same inputs: the same message classes,
the same keyword-only `__init__` parameters, the same field-name literals accepted by
HasField / ClearField, and the same class-level aliases of those argument types and of
WhichOneof's (`_HasFieldArgType`, `_WhichOneofArgType_<oneof>`, ...), which typed code
may name. (Layout and helper names differ on purpose.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import FIXTURES, KITCHEN_FILES, REPO, protoc, python_in, run

CASES = {
    "ml_bridge": (REPO / "proto", ["ml_bridge.proto"]),
    "kitchen": (FIXTURES, KITCHEN_FILES),
    "editions": (FIXTURES, ["fixtures/editions/v1/editions.proto", "fixtures/editions/v1/editions2024.proto"]),
}


def shape(pyi: Path) -> dict[str, dict[str, list[str]]]:
    """class path -> {"init": kw-only names, "HasField": literals, "ClearField": literals,
    "aliases": ["name=literals", ...]}."""
    tree = ast.parse(pyi.read_text())
    out: dict[str, dict[str, list[str]]] = {}

    def literals(node: ast.AST) -> list[str]:
        return sorted({n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)})

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if not isinstance(node, ast.ClassDef):
                continue
            path = f"{prefix}{node.name}"
            entry: dict[str, list[str]] = {}
            aliases = {
                item.target.id: item.value
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value is not None
            }
            for item in node.body:
                if not isinstance(item, ast.FunctionDef):
                    continue
                if item.name == "__init__":
                    entry["init"] = sorted(a.arg for a in item.args.kwonlyargs)
                elif item.name in ("HasField", "ClearField") and len(item.args.args) == 2:
                    annotation = item.args.args[1].annotation
                    # Either an inline Literal or a class-level alias of one.
                    if isinstance(annotation, ast.Name) and annotation.id in aliases:
                        annotation = aliases[annotation.id]
                    entry[item.name] = literals(annotation) if annotation is not None else []
            # mypy-protobuf's class-level aliases of the argument and result types of
            # HasField, ClearField and WhichOneof: their names and literals.
            entry["aliases"] = sorted(
                f"{name}={literals(value)}"
                for name, value in aliases.items()
                if name.startswith(("_HasFieldArgType", "_ClearFieldArgType", "_WhichOneof"))
            )
            if "init" in entry:
                out[path] = entry
            visit(node.body, f"{path}.")

    visit(tree.body, "")
    return out


# Where mypy-protobuf 5.1.0 is wrong and our stubs deliberately differ: in a file written
# in an edition it lets HasField name repeated and map fields, for which the runtime
# raises ValueError (shown by test_has_field_of_a_repeated_editions_field_raises).
# (file, class) -> the names its HasField accepts that ours rightly does not.
THEIR_MISTAKES = {
    ("fixtures/editions/v1/editions_pb2.pyi", "Settings"): {"children", "samples"},
}


def without(entry: dict[str, list[str]], wrong: set[str]) -> dict[str, list[str]]:
    """`entry` without `wrong` among the names HasField accepts."""
    fixed = dict(entry)
    fixed["HasField"] = [name for name in entry["HasField"] if name not in wrong]
    fixed["aliases"] = [
        alias if not alias.startswith("_HasFieldArgType=") else f"_HasFieldArgType={fixed['HasField']}"
        for alias in entry["aliases"]
    ]
    return fixed


@pytest.mark.parametrize("case", sorted(CASES))
def test_stubs_describe_the_same_api_as_mypy_protobuf(case: str, codegen_bin: Path, tmp_path: Path) -> None:
    include, files = CASES[case]
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    protoc(theirs, include, files, "--mypy_out")
    run([codegen_bin, "-I", include, "--python-out", ours, *files])
    for proto in files:
        name = proto.replace(".proto", "_pb2.pyi")
        expected, actual = shape(theirs / name), shape(ours / name)
        assert expected, f"no classes parsed from mypy-protobuf's {name}"
        assert sorted(actual) == sorted(expected), f"{name}: different message classes"
        for cls in expected:
            wrong = THEIR_MISTAKES.get((name, cls))
            if wrong is not None:
                assert set(expected[cls]["HasField"]) >= wrong, f"{name}: {cls}: mypy-protobuf was fixed"
                expected[cls] = without(expected[cls], wrong)
            assert actual[cls] == expected[cls], f"{name}: {cls} differs"


def test_has_field_of_a_repeated_editions_field_raises(codegen_bin: Path, tmp_path: Path) -> None:
    """Why our stubs leave repeated and map fields out of HasField in editions files."""
    include, files = CASES["editions"]
    run([codegen_bin, "-I", include, "--python-out", tmp_path, *files])
    script = tmp_path / "check.py"
    script.write_text(
        "from fixtures.editions.v1 import editions_pb2\n"
        "settings = editions_pb2.Settings()\n"
        "for name in ('samples', 'children'):\n"
        "    try:\n"
        "        settings.HasField(name)\n"
        "    except ValueError:\n"
        "        print(name, 'raises')\n"
        "print(settings.HasField('name'), settings.HasField('level'))\n"
    )
    out = python_in(tmp_path, script)
    assert out.split("\n")[:3] == ["samples raises", "children raises", "False False"], out
