"""Variable dependencies from Python against a real engine: a derived variable computed by
the engine's `add` tool from `a` and `b`, recomputed in the same step as each change, seen
by watchers, refused as a write target; inputs that cannot be deleted while used; cycles and
missing inputs refused at registration."""

from __future__ import annotations

import asyncio

import pytest

from mlbridge import (
    AsyncSessionContext,
    InvalidArgument,
    SessionContext,
    ToolNotFound,
    VariableInUse,
    VariableNotFound,
)
from sdk_engine import RunningEngine, address, ctx, engine  # noqa: F401


def test_a_derived_variable_follows_its_inputs(ctx: SessionContext) -> None:  # noqa: F811
    ctx.register_variable("a", "float", 1.0)
    ctx.register_variable("b", "float", 2.0)
    total = ctx.register_derived("total", "float", "add", ["a", "b"])
    assert (total.value, total.depends_on, total.derived_by) == (3.0, ("a", "b"), "add")

    with ctx.watch("total") as changes:
        stream = iter(changes)
        assert next(stream).variable.value == 3.0  # the initial value: the stream is open
        ctx.set_variable("a", 10.0)
        update = next(stream)
    assert update.variable.value == 12.0 and update.source == "derived:add"
    ctx.set_variables({"a": 1.5, "b": 0.5})
    assert ctx.get_variable("total") == 2.0
    assert ctx.describe_variable("total").version == 3

    with pytest.raises(InvalidArgument, match="derived"):
        ctx.set_variable("total", 1.0)
    with pytest.raises(VariableInUse) as in_use:
        ctx.delete_variable("a")
    assert in_use.value.context["dependents"] == "total"
    assert ctx.delete_variable("total")
    assert ctx.delete_variable("a")


def test_bad_dependencies_are_refused_at_registration(ctx: SessionContext) -> None:  # noqa: F811
    ctx.register_variable("a", "float", 1.0)
    with pytest.raises(InvalidArgument, match="cycle"):
        ctx.register_variable("self_ref", "float", 0.0, depends_on=["self_ref"])
    with pytest.raises(VariableNotFound, match="b"):
        ctx.register_derived("total", "float", "add", ["a", "b"])
    with pytest.raises(ToolNotFound):
        ctx.register_derived("total", "float", "no_such_tool", ["a"])
    note = ctx.register_variable("note", "string", "about a", depends_on=["a"])
    assert note.depends_on == ("a",)
    with pytest.raises(VariableInUse):
        ctx.delete_variable("a")


def test_dependencies_from_asyncio(engine: RunningEngine) -> None:  # noqa: F811
    async def main() -> None:
        async with AsyncSessionContext(engine.address) as ctx:
            await ctx.register_variable("a", "float", 2.0)
            await ctx.register_variable("b", "float", 3.0)
            await ctx.register_derived("total", "float", "add", ["a", "b"])
            await ctx.set_variable("b", 4.0)
            assert await ctx.get_variable("total") == 6.0

    asyncio.run(main())
