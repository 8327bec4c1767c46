"""Engine-native optimizers from Python (`mlbridge.native`) against a real engine process: the
engine runs the search loop and calls back into this process to score each candidate.

A raising metric fails its trial (type and traceback kept) and the run goes on; a hanging one
times out at the callback deadline (and sees the cancellation); a client killed mid-run lets
the lock lapse at its lease end and its resources go with the session; two optimizers
contend for one variable; a seed gives the same candidates (also with parallel trials and a
failure); apply_best then rollback; metrics from sync and asyncio programs; progress; and TPE
beats random search on a smooth function."""

from __future__ import annotations

import asyncio
import math
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from mlbridge import (
    AsyncSessionContext,
    CallbackNotFound,
    InvalidArgument,
    SessionContext,
    VariableLocked,
)
from mlbridge.callbacks import current_call
from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc
from mlbridge.native import AsyncOptimizer, Optimizer, Progress, RunResult, Trial, TrialState
from sdk_engine import RunningEngine, address, ctx, engine, eventually, unique  # noqa: F401

# Long enough never to be reached when the code works; a broken cancellation fails, not hangs.
NEVER = 60.0


def square(ctx: SessionContext, *names: str, value: float = 0.5) -> None:
    for name in names:
        ctx.register_variable(name, "float", value, min=-2.0, max=2.0)


def test_a_run_writes_each_candidate_through_the_lock_and_applies_the_best(ctx: SessionContext) -> None:
    square(ctx, "x")
    seen: list[float] = []

    def metric(x: float) -> float:
        # The candidate is the variable's value while the metric runs, written by the optimizer.
        seen.append(x)
        return -((x - 1.0) ** 2)

    with Optimizer(ctx, "random", variables=["x"], metric=metric, seed=3) as optimizer:
        assert optimizer.seed == 3
        result = optimizer.run(n_trials=8)
        assert isinstance(result, RunResult)
        assert (result.trials, result.complete, result.failed, result.finished) == (8, 8, 0, "apply_best")
        trials = optimizer.trials()
        assert [t.number for t in trials] == list(range(8))
        assert [t.values["x"] for t in trials] == seen
        assert all(t.state is TrialState.COMPLETE and t.attempts == 1 for t in trials)
        best = optimizer.best()
        assert best is not None and best == result.best
        assert best.score == max(t.score for t in trials if t.score is not None)
        # The run ended by applying the best values; the history shows every trial.
        assert ctx.get_variable("x") == best.values["x"]
        history = ctx.history("x")
        trial_writes = [h for h in history if h.source == f"optimizer:{optimizer.id}" and "applied" not in h.metadata]
        assert sorted(int(h.metadata["trial"]) for h in trial_writes) == list(range(8))
        assert not ctx.describe_variable("x").optimizing


def test_a_raising_metric_fails_its_trial_keeps_type_and_traceback_and_the_run_goes_on(ctx: SessionContext) -> None:
    square(ctx, "x")
    calls: list[int] = []

    def metric(x: float, trial: int) -> float:
        calls.append(trial)
        if trial == 2:
            raise ValueError(f"cannot score {x!r}")
        return x

    with Optimizer(ctx, "random", variables="x", metric=metric, seed=1, retries=1) as optimizer:
        result = optimizer.run(n_trials=5)
        assert (result.trials, result.complete, result.failed) == (5, 4, 1)
        failed = optimizer.trials()[2]
        assert failed.state is TrialState.FAILED and failed.score is None
        # Retried once with the same values, then recorded failed.
        assert failed.attempts == 2 and calls.count(2) == 2
        assert failed.error is not None
        assert failed.error.kind == "CALLBACK_ERROR"
        assert failed.error.type == "ValueError"
        assert "cannot score" in failed.error.message
        assert "in metric" in failed.error.traceback
        # Never a made-up score: the best is a complete trial.
        assert result.best is not None and result.best.number != 2


def test_a_metric_that_returns_no_number_fails_its_trial_rather_than_scoring_it(ctx: SessionContext) -> None:
    square(ctx, "x")
    answers: list[object] = [None, float("nan"), "high", 0.25, True]
    events: list[Progress] = []

    def metric(trial: int) -> object:
        return answers[trial]

    with Optimizer(ctx, "random", variables=["x"], metric=metric, seed=1, retries=0) as optimizer:
        result = optimizer.run(n_trials=5, progress=events.append)
        assert (result.complete, result.failed) == (1, 4)
        trials = optimizer.trials()
    assert [t.state for t in trials] == [TrialState.FAILED] * 3 + [TrialState.COMPLETE, TrialState.FAILED]
    assert all(t.error is not None and t.error.kind == "TYPE_MISMATCH" for t in trials if t.number != 3)
    assert result.best is not None and result.best.score == 0.25
    assert sorted(e.number for e in events if e.event == "failed") == [0, 1, 2, 4]


def test_a_hanging_metric_times_out_at_the_deadline_sees_the_cancellation_and_the_run_goes_on(
    ctx: SessionContext,
) -> None:
    square(ctx, "x")
    saw_cancel = threading.Event()

    def metric(x: float, trial: int) -> float:
        if trial == 1:
            call = current_call()
            assert call is not None
            if call.cancelled.wait(NEVER):
                saw_cancel.set()
        return x

    with Optimizer(
        ctx, "random", variables=["x"], metric=metric, seed=2, retries=0, metric_timeout=0.3
    ) as optimizer:
        result = optimizer.run(n_trials=4)
        assert (result.trials, result.complete, result.timed_out) == (4, 3, 1)
        hung = optimizer.trials()[1]
        assert hung.state is TrialState.TIMED_OUT and hung.score is None
        assert hung.error is not None and hung.error.kind == "TIMEOUT"
    assert saw_cancel.wait(NEVER), "the metric never saw its call cancelled"


_KILLED_CLIENT = """
import sys, time
from mlbridge import SessionContext
from mlbridge.native import Optimizer

ctx = SessionContext(sys.argv[1], sys.argv[2], keep_session=True).open()

def metric(x: float) -> float:
    print("scoring", flush=True)
    time.sleep(0.2)
    return x

optimizer = Optimizer(ctx, "random", variables=["x"], metric=metric, lease=float(sys.argv[3]), seed=5)
print(optimizer.id, flush=True)
optimizer.run(n_trials=10000)
"""


def test_a_client_killed_during_a_run_lets_the_lock_lapse_and_its_resources_go_with_the_session(
    engine: RunningEngine,  # noqa: F811
) -> None:
    lease = 1.0
    session = unique("killed")
    with SessionContext(engine.address, session, keep_session=True) as ctx:
        square(ctx, "x")
        client = subprocess.Popen(
            [sys.executable, "-c", _KILLED_CLIENT, engine.address, session, str(lease)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout is not None
            optimizer_id = client.stdout.readline().strip()
            assert client.stdout.readline() == "scoring\n"
            described = ctx.describe_variable("x")
            assert described.optimizing and described.optimizer_id == optimizer_id
            client.kill()
            client.wait()
        finally:
            client.kill()
            client.wait()
        # Nobody renews the lease any more: it lapses, and a plain write is accepted.
        freed = eventually(lambda: ctx.describe_variable("x"), lambda v: not v.optimizing, timeout=lease * 10)
        assert not freed.optimizing and freed.optimizer_id == ""
        written = ctx.set_variable("x", 1.5).version
        # The optimizer stopped: nothing writes the variable after its lease lapsed.
        assert ctx.history("x", limit=1)[0].version == written
        # The resource belongs to the session, and goes with it.
        assert [r.resource_id for r in ctx.resources()] == [optimizer_id]
        assert ctx.get_session().resource_count == 1
    with grpc.insecure_channel(engine.address) as channel:
        cleaned = pb_grpc.MLBridgeStub(channel).CleanupSession(pb.CleanupSessionRequest(session_id=session))
    assert cleaned.existed and cleaned.resources_released == 1


def test_two_optimizers_contend_for_a_variable_and_the_loser_is_told_the_holder(ctx: SessionContext) -> None:
    square(ctx, "x", "y")
    first = Optimizer(ctx, "random", variables=["x"], seed=1)
    second = Optimizer(ctx, "random", variables=["y", "x"], seed=1, metric=lambda x, y: x + y)
    try:
        asked = first.ask()
        assert asked.state is TrialState.RUNNING and asked.number == 0
        with pytest.raises(VariableLocked) as refused:
            second.ask()
        assert first.id in refused.value.message
        assert refused.value.context["optimizer_id"] == first.id and refused.value.context["variable"] == "x"
        with pytest.raises(VariableLocked):
            second.run(n_trials=2)
        # Exactly one holds it, and the loser took nothing (all or nothing).
        assert ctx.describe_variable("x").optimizer_id == first.id
        assert not ctx.describe_variable("y").optimizing
        first.tell(asked, 1.0)
        first.restore()
        # Released: the other one runs now.
        assert second.run(n_trials=2).complete == 2
    finally:
        first.release()
        second.release()


def test_ask_and_tell_as_a_manual_loop(ctx: SessionContext) -> None:
    square(ctx, "x")
    with Optimizer(ctx, "tpe", variables=["x"], seed=4, direction="minimize") as optimizer:
        for _ in range(4):
            trial = optimizer.ask()
            # The candidate was written to the variable through the lock.
            assert ctx.get_variable("x") == trial.values["x"]
            told = optimizer.tell(trial, abs(trial.values["x"]))
            assert told.state is TrialState.COMPLETE and told.number == trial.number
        pruned = optimizer.tell(optimizer.ask(), state="pruned")
        assert pruned.state is TrialState.PRUNED
        failed = optimizer.tell(optimizer.ask().number, state=TrialState.FAILED, error=RuntimeError("diverged"))
        assert failed.state is TrialState.FAILED and failed.error is not None
        assert "diverged" in failed.error.message
        with pytest.raises(InvalidArgument):
            optimizer.tell(0, 1.0)  # already told
        best = optimizer.best()
        assert best is not None
        assert best.score == min(t.score for t in optimizer.trials() if t.score is not None)
        versions = optimizer.apply_best()
        assert set(versions) == {"x"} and ctx.get_variable("x") == best.values["x"]


def candidates(ctx: SessionContext, seed: int, parallel: int, fail: int | None = None) -> list[Trial]:
    def metric(x: float, y: float, trial: int) -> float:
        if trial == fail:
            raise RuntimeError("flaky")
        return -((x - 0.3) ** 2) - (y + 0.2) ** 2

    with Optimizer(ctx, "tpe", variables=["x", "y"], metric=metric, seed=seed, startup_trials=4, retries=0) as opt:
        opt.run(n_trials=12, parallel=parallel)
        return opt.trials()


def test_the_same_seed_gives_the_same_candidates(ctx: SessionContext) -> None:
    square(ctx, "x", "y")
    for parallel, fail in [(1, None), (3, None), (2, 5)]:
        first = candidates(ctx, 11, parallel, fail)
        again = candidates(ctx, 11, parallel, fail)
        assert [t.values for t in first] == [t.values for t in again], (parallel, fail)
        assert [t.state for t in first] == [t.state for t in again]
        if fail is not None:
            assert first[fail].state is TrialState.FAILED
    other = candidates(ctx, 12, 1)
    assert [t.values for t in other] != [t.values for t in candidates(ctx, 11, 1)]


def test_apply_best_then_rollback_restores_the_previous_value(ctx: SessionContext) -> None:
    square(ctx, "x", value=0.25)
    before = ctx.describe_variable("x").version

    with Optimizer(
        ctx, "grid", variables=["x"], metric=lambda x: -abs(x - 1.0), on_finish="restore", grid_points=5
    ) as optimizer:
        result = optimizer.run(n_trials=5)
        assert result.finished == "restore" and result.trials == 5
        # Restored at the end of the run: the value is the starting one again.
        assert ctx.get_variable("x") == 0.25
        assert result.best is not None and result.best.values["x"] == 1.0
        versions = optimizer.apply_best()
        assert ctx.get_variable("x") == 1.0
        entry = ctx.history("x", limit=1)[0]
        assert entry.version == versions["x"] and entry.metadata.get("applied") == "best"
        assert entry.source == f"optimizer:{optimizer.id}"
    ctx.rollback("x", before)
    assert ctx.get_variable("x") == 0.25


def test_metric_by_name_and_configuration_errors(ctx: SessionContext) -> None:
    square(ctx, "x")
    ctx.register_variable("unbounded", "float", 0.5)

    @ctx.callback("named_metric")
    def named(x: float) -> float:
        return x

    with Optimizer(ctx, "random", variables=["x"], metric="named_metric", seed=1) as optimizer:
        assert optimizer.run(n_trials=3).complete == 3
    with pytest.raises(CallbackNotFound):
        Optimizer(ctx, "random", variables=["x"], metric="no_such_metric")
    with pytest.raises(InvalidArgument) as raised:
        Optimizer(ctx, "random", variables=["unbounded"], metric=named)
    assert "unbounded" in raised.value.message
    # A failed creation leaves no callback behind; the named one stays.
    assert ctx.get_session().callback_count == 1


def test_release_frees_the_resource_and_the_metric_it_registered(ctx: SessionContext) -> None:
    square(ctx, "x")
    optimizer = Optimizer(ctx, "random", variables=["x"], metric=lambda x: x)
    session = ctx.get_session()
    assert (session.resource_count, session.callback_count) == (1, 1)
    assert [r.kind for r in ctx.resources()] == ["optimizer"]
    assert optimizer.release() is True and optimizer.release() is False
    session = ctx.get_session()
    assert (session.resource_count, session.callback_count) == (0, 0)


def test_progress_reports_each_trial_from_the_watch_and_the_metric(ctx: SessionContext) -> None:
    square(ctx, "x", "y")
    events: list[Progress] = []
    with Optimizer(ctx, "random", variables=["x", "y"], metric=lambda x, y: x * y, seed=9) as optimizer:
        result = optimizer.run(n_trials=4, progress=events.append)
        trials = optimizer.trials()
    started = [e for e in events if e.event == "started"]
    scored = [e for e in events if e.event == "scored"]
    assert [e.number for e in started] == [0, 1, 2, 3]
    assert [e.values for e in started] == [t.values for t in trials]
    assert sorted((e.number, e.score) for e in scored) == [(t.number, t.score) for t in trials]
    applied = [e for e in events if e.event == "applied"]
    assert result.best is not None and [e.values for e in applied] == [result.best.values]


def test_progress_true_prints_a_line_per_trial(ctx: SessionContext, capsys: pytest.CaptureFixture[str]) -> None:
    square(ctx, "x")
    with Optimizer(ctx, "random", variables=["x"], metric=lambda x: x, seed=9) as optimizer:
        optimizer.run(n_trials=3, progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines if "score" in line] == [["trial", "0"], ["trial", "1"], ["trial", "2"]]


def test_an_asyncio_program_with_an_async_metric(engine: RunningEngine) -> None:  # noqa: F811
    async def main() -> None:
        async with AsyncSessionContext(engine.address) as ctx:
            await ctx.register_variable("x", "float", 0.5, min=-2.0, max=2.0)
            await ctx.register_variable("n", "integer", 3, min=1, max=8)
            loop = asyncio.get_running_loop()
            ran_on: list[asyncio.AbstractEventLoop] = []

            async def metric(x: float, n: int) -> float:
                await asyncio.sleep(0)
                ran_on.append(asyncio.get_running_loop())
                return -abs(x) - abs(n - 5)

            events: list[Progress] = []
            async with AsyncOptimizer(ctx, "tpe", variables=["x", "n"], metric=metric, seed=5) as optimizer:
                running = asyncio.create_task(optimizer.run(n_trials=12, progress=events.append))
                while not ran_on:
                    await asyncio.sleep(0.01)
                # One run at a time per optimizer.
                with pytest.raises(InvalidArgument) as raised:
                    await optimizer.run(n_trials=1)
                assert "already running" in raised.value.message
                result = await running
                assert result.complete == 12
                trials = await optimizer.trials()
                assert all(isinstance(t.values["n"], int) for t in trials)
                assert (await optimizer.best()) == result.best
                assert len(await ctx.resources()) == 1
            # The async metric ran on this program's loop while `run` awaited the engine.
            assert ran_on == [loop] * 12
            assert sorted(e.number for e in events if e.event == "scored") == list(range(12))
            assert len(await ctx.resources()) == 0

    asyncio.run(asyncio.wait_for(main(), NEVER))


def best_score(ctx: SessionContext, algorithm: str, seed: int) -> float:
    def smooth(x: float, y: float) -> float:
        return -((x - 0.7) ** 2) - 2 * (y + 0.4) ** 2 + 0.1 * math.sin(3 * x)

    with Optimizer(ctx, algorithm, variables=["x", "y"], metric=smooth, seed=seed) as optimizer:
        result = optimizer.run(n_trials=50)
        assert result.complete == 50 and result.best is not None and result.best.score is not None
        return result.best.score


def test_tpe_beats_random_search_on_a_smooth_function(ctx: SessionContext) -> None:
    square(ctx, "x", "y")
    tpe = [best_score(ctx, "tpe", seed) for seed in range(5)]
    random = [best_score(ctx, "random", seed) for seed in range(5)]
    assert statistics.median(tpe) > statistics.median(random), (tpe, random)


@pytest.fixture
def two_clients(engine: RunningEngine) -> Iterator[tuple[SessionContext, SessionContext]]:  # noqa: F811
    with SessionContext(engine.address) as owner:
        with SessionContext(engine.address, owner.session_id, keep_session=True) as other:
            yield owner, other


def test_another_client_of_the_session_sees_the_optimizer(two_clients: tuple[SessionContext, SessionContext]) -> None:
    owner, other = two_clients
    square(owner, "x")
    with Optimizer(owner, "random", variables=["x"], metric=lambda x: x, seed=1) as optimizer:
        optimizer.run(n_trials=2)
        listed: list[Any] = other.resources()
        assert [(r.resource_id, r.kind, r.name) for r in listed] == [(optimizer.id, "optimizer", "random")]
        assert int(listed[0].metadata["seed"]) == optimizer.seed == 1


def test_a_time_budget_ends_the_run(ctx: SessionContext) -> None:
    square(ctx, "x")
    def slow(x: float) -> float:
        time.sleep(0.05)
        return x

    with Optimizer(ctx, "random", variables=["x"], metric=slow, seed=1) as optimizer:
        # No trial count: the budget alone ends the run, long before 10000 trials.
        result = optimizer.run(timeout=0.5)
        assert 1 <= result.trials < 10000 and result.complete == result.trials
        assert len(optimizer.trials()) == result.trials


def test_the_search_space_comes_from_the_variables_types_and_constraints(ctx: SessionContext) -> None:
    ctx.register_variable("rate", "float", 0.1, min=1e-4, max=1.0, metadata={"scale": "log"})
    ctx.register_variable("layers", "integer", 2, min=1, max=4)
    ctx.register_variable("model", "choice", "small", choices=("small", "large"))
    ctx.register_variable("shuffle", "boolean", False)
    names = ["rate", "layers", "model", "shuffle"]
    with Optimizer(ctx, "random", variables=names, metric=lambda values: 0.0, seed=8) as optimizer:
        optimizer.run(n_trials=40)
        trials = optimizer.trials()
    assert all(1e-4 <= t.values["rate"] <= 1.0 for t in trials)
    # A log scale spreads the candidates over the decades, not mostly into the last one.
    assert sum(t.values["rate"] < 0.01 for t in trials) >= 10
    assert {t.values["layers"] for t in trials} == {1, 2, 3, 4}
    assert {t.values["model"] for t in trials} == {"small", "large"}
    assert {t.values["shuffle"] for t in trials} == {False, True}
