"""Every variable type's Python value survives a round trip through the engine, including
numpy arrays (zero-copy decoding) and the SDK without numpy."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from mlbridge import Choice, Constraints, ConstraintViolation, Dtype, Embedding, ModuleRef, SessionContext, Tensor, TypeMismatch, VariableType
from sdk_engine import address, ctx, engine  # noqa: F401


@pytest.fixture
def fresh(ctx: SessionContext, address: str) -> Iterator[SessionContext]:
    """A second client on `ctx`'s session that never caches: every read is a wire read."""
    with SessionContext(address, ctx.session_id, token=ctx.token, cache=False, numpy=False) as reader:
        yield reader


ROUND_TRIPS: list[tuple[str, Any, Constraints | None, Any]] = [
    ("float", 0.25, None, 0.25),
    ("float", 2, None, 2.0),
    ("float", float("inf"), None, float("inf")),
    ("integer", 2**63 - 1, None, 2**63 - 1),
    ("integer", -(2**63), None, -(2**63)),
    ("string", "héllo ✓ \n", None, "héllo ✓ \n"),
    ("string", "", None, ""),
    ("boolean", True, None, True),
    ("boolean", False, None, False),
    ("bytes", b"\x00\xffraw", None, b"\x00\xffraw"),
    ("choice", "b", Constraints(choices=["a", "b"]), Choice("b")),
    ("choice", Choice("a"), Constraints(choices=["a", "b"]), Choice("a")),
    (
        "module",
        ModuleRef("dspy.ChainOfThought", "question -> answer", {"n": 3, "temperature": 0.5}),
        None,
        ModuleRef("dspy.ChainOfThought", "question -> answer", {"n": 3, "temperature": 0.5}),
    ),
    ("module", ModuleRef("sklearn.svm.SVC"), None, ModuleRef("sklearn.svm.SVC")),
    ("embedding", Embedding([0.1, -2.5, 3e-3], model="text-embedding-3-small"), None,
     Embedding([0.1, -2.5, 3e-3], model="text-embedding-3-small")),
    ("embedding", [0.5, 1, 2.25], None, Embedding([0.5, 1.0, 2.25])),
    ("tensor", Tensor(Dtype.INT16, (2,), b"\x01\x00\xff\xff"), None, Tensor(Dtype.INT16, (2,), b"\x01\x00\xff\xff")),
    ("tensor", Tensor("bfloat16", (), b"\x80\x3f"), None, Tensor(Dtype.BFLOAT16, (), b"\x80\x3f")),
    ("list", [1, "two", 3.5, None, [True], {"k": b"v"}], None, [1, "two", 3.5, None, [True], {"k": b"v"}]),
    ("list", [], None, []),
    ("map", {"a": 1, "nested": {"b": [1, 2]}, "none": None}, None, {"a": 1, "nested": {"b": [1, 2]}, "none": None}),
    ("map", {}, None, {}),
    ("any", None, None, None),
    ("any", {"mixed": [Choice("c"), ModuleRef("m")]}, None, {"mixed": [Choice("c"), ModuleRef("m")]}),
    ("float", None, Constraints(nullable=True), None),
]


@pytest.mark.parametrize(("type_", "value", "constraints", "expected"), ROUND_TRIPS)
def test_round_trip(
    ctx: SessionContext, fresh: SessionContext, type_: str, value: Any, constraints: Constraints | None, expected: Any
) -> None:
    registered = ctx.register_variable("v", type_, value, constraints)
    assert registered.type is VariableType(type_)
    if not isinstance(expected, Tensor):  # `ctx` decodes tensors as numpy arrays when it can
        assert registered.value == expected
    read = fresh.get_variable("v")
    assert read == expected
    assert type(read) is type(expected)
    ctx.set_variable("v", value)
    assert fresh.get_variable("v") == expected
    assert fresh.describe_variable("v").version == 2


def test_nan_survives(ctx: SessionContext, fresh: SessionContext) -> None:
    ctx.register_variable("v", "float", float("nan"))
    value = fresh.get_variable("v")
    assert value != value


def test_a_large_value(ctx: SessionContext, fresh: SessionContext) -> None:
    blob = bytes(range(256)) * (5 * 4096)  # 5 MiB: above grpc's default 4 MiB message cap
    ctx.register_variable("blob", "bytes", blob)
    assert fresh.get_variable("blob") == blob


def test_values_are_independent_copies(ctx: SessionContext) -> None:
    ctx.register_variable("items", "list", [1, 2])
    first = ctx.get_variable("items")
    first.append(3)
    assert ctx.get_variable("items") == [1, 2], "mutating a returned value must not change the cache"


NUMPY_DTYPES = [
    "float16", "float32", "float64", "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64", "bool", "complex64", "complex128",
]  # fmt: skip


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_numpy_tensors_round_trip(ctx: SessionContext, address: str, dtype: str) -> None:
    np = pytest.importorskip("numpy", reason="numpy is not installed: numpy tensor round trips are skipped")
    array = (np.arange(24).reshape(2, 3, 4) % 2).astype(dtype)
    ctx.register_variable("t", "tensor", array)
    with SessionContext(address, ctx.session_id, token=ctx.token, cache=False, numpy=True) as reader:
        back = reader.get_variable("t")
        assert isinstance(back, np.ndarray)
        assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
        np.testing.assert_array_equal(back, array)
        assert not back.flags.writeable, "decoded arrays are views over the received bytes"
        with SessionContext(address, ctx.session_id, token=ctx.token, numpy=False) as plain:
            raw = plain.get_variable("t")
        assert isinstance(raw, Tensor) and raw.dtype is Dtype(dtype) and raw.shape == (2, 3, 4)
        assert raw.data == array.astype(array.dtype.newbyteorder("<")).tobytes()


def test_numpy_layouts(ctx: SessionContext, address: str) -> None:
    np = pytest.importorskip("numpy", reason="numpy is not installed: numpy tensor round trips are skipped")
    cases = {
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "transposed": np.arange(6, dtype=np.float64).reshape(2, 3).T,
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.int64),
        "sliced": np.arange(20, dtype=np.uint16)[::3],
    }
    for name, array in cases.items():
        ctx.register_variable(name, "tensor", array)
    with SessionContext(address, ctx.session_id, token=ctx.token, cache=False, numpy=True) as reader:
        for name, array in cases.items():
            back = reader.get_variable(name)
            assert back.shape == array.shape, name
            np.testing.assert_array_equal(back, array, err_msg=name)
    ctx.register_variable("constrained", "tensor", np.ones((2, 5), np.float32), Constraints(shape=[2, 0], dtype="float32"))
    ctx.set_variable("constrained", np.zeros((2, 9), np.float32))


def test_numpy_scalars_and_embeddings(ctx: SessionContext) -> None:
    np = pytest.importorskip("numpy", reason="numpy is not installed: numpy scalar conversions are skipped")
    ctx.register_variable("f", "float", np.float64(1.5))
    ctx.register_variable("i", "integer", np.int32(-3))
    ctx.register_variable("b", "boolean", np.bool_(True))
    ctx.register_variable("e", "embedding", np.array([0.5, 0.25], dtype=np.float64), Constraints(dimensions=2))
    assert (ctx["f"], ctx["i"], ctx["b"]) == (1.5, -3, True)
    embedding = ctx["e"]
    assert embedding == Embedding([0.5, 0.25])
    np.testing.assert_array_equal(embedding.to_numpy(), np.array([0.5, 0.25], dtype=np.float32))
    assert Tensor.from_numpy(np.eye(2)).to_numpy().tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_the_sdk_works_without_numpy(address: str) -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["numpy"] = None  # as if numpy were not installed
        from mlbridge import SessionContext, Tensor, Dtype
        with SessionContext(sys.argv[1]) as ctx:
            ctx.register_variable("t", "tensor", Tensor(Dtype.FLOAT32, (1,), b"\\x00\\x00\\x80\\x3f"))
            value = ctx.get_variable("t")
            assert isinstance(value, Tensor) and value.shape == (1,), value
            try:
                value.to_numpy()
            except ImportError as error:
                print(error)
        """
    )
    result = subprocess.run([sys.executable, "-c", script, address], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'mlbridge[numpy]'" in result.stdout


def test_a_choice_in_an_any_variable(ctx: SessionContext, address: str) -> None:
    with SessionContext(address, ctx.session_id, token=ctx.token, validate=False, cache=False) as raw:
        raw.register_variable("raw", "any", Choice("c"))  # the engine's own check
        assert raw.get_variable("raw") == Choice("c")
    ctx.register_variable("v", "any", Choice("c"))  # the SDK's port of it


def test_an_embedding_is_a_sequence_of_floats(ctx: SessionContext) -> None:
    ctx.register_variable("e", "embedding", [0.5, 1, 2.25])
    embedding = ctx["e"]
    assert isinstance(embedding, Embedding)
    assert len(embedding) == 3
    assert list(embedding) == [0.5, 1.0, 2.25]
    assert embedding[0] == 0.5 and embedding[-1] == 2.25 and embedding[1:] == [1.0, 2.25]
    assert embedding == [0.5, 1.0, 2.25] and embedding == (0.5, 1.0, 2.25)
    assert embedding != [0.5, 1.0] and embedding != "abc"
    assert 2.25 in embedding and sum(embedding) == 3.75
    assert embedding == Embedding([0.5, 1, 2.25]) and embedding != Embedding([0.5, 1, 2.25], model="m")
    assert hash(embedding) == hash(Embedding([0.5, 1, 2.25]))


def test_a_plain_list_reaches_an_embedding_from_a_cold_cache(ctx: SessionContext, fresh: SessionContext) -> None:
    """A client that knows nothing of the variable sends a list; the engine makes it an
    embedding (and still checks it), with no schema read first."""
    ctx.register_variable("e", "embedding", [1.0, 2.0], Constraints(dimensions=2))
    fresh.set_variable("e", [0.5, 3])
    assert fresh.get_variable("e") == Embedding([0.5, 3.0])
    with pytest.raises(ConstraintViolation, match="embedding has 1 dimensions, expected 2"):
        fresh.set_variable("e", [0.5])
    with pytest.raises(TypeMismatch, match="expects embedding, got list"):
        fresh.set_variable("e", ["a", "b"])


def test_a_tensor_from_a_nested_list(ctx: SessionContext, fresh: SessionContext) -> None:
    ctx.register_variable("ints", "tensor", [[1, 2, 3], [4, 5, 6]])
    ctx.register_variable("floats", "tensor", [[0.5], [1.5]])
    ctx.register_variable("flags", "tensor", [True, False])
    ints = fresh.get_variable("ints")
    assert (ints.dtype, ints.shape) == (Dtype.INT64, (2, 3))
    assert ints.data == b"".join(i.to_bytes(8, "little") for i in range(1, 7))
    floats = fresh.get_variable("floats")
    assert (floats.dtype, floats.shape) == (Dtype.FLOAT64, (2, 1))
    assert fresh.get_variable("flags") == Tensor(Dtype.BOOL, (2,), b"\x01\x00")
    ctx.set_variable("ints", [[7, 8, 9], [0, 0, 0]])
    assert fresh.get_variable("ints").data[:8] == (7).to_bytes(8, "little")
    with pytest.raises(TypeError, match="rectangular"):
        ctx.register_variable("ragged", "tensor", [[1, 2], [3]])
    with pytest.raises(TypeError, match="a tensor holds numbers"):
        ctx.register_variable("words", "tensor", [["a"]])


def test_a_tensor_from_a_numpy_array(ctx: SessionContext, fresh: SessionContext) -> None:
    np = pytest.importorskip("numpy", reason="numpy is not installed")
    ctx.register_variable("t", "tensor", np.arange(6, dtype=np.int16).reshape(2, 3))
    read = fresh.get_variable("t")
    assert (read.dtype, read.shape) == (Dtype.INT16, (2, 3))
    np.testing.assert_array_equal(read.to_numpy(), np.arange(6, dtype=np.int16).reshape(2, 3))
