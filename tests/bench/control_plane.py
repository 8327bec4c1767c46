"""The Python side of `cargo xtask bench control-plane`. Prints one JSON object per line.

Usage:
  python tests/bench/control_plane.py serve ENGINE_ADDR
      Opens a session, registers the no-op callback `noop` with the SDK
      (`ctx.register_callback`), prints `SESSION <id> <callback server endpoint>` and
      serves it until stdin closes.
  python tests/bench/control_plane.py tpe ENGINE_ADDR TRIALS SEED...
      For each seed, in alternating order: the engine's TPE optimizer (created with
      `ctx.create_resource("optimizer", "tpe", ...)`, run with `ctx.invoke_resource(id,
      "run", n_trials=TRIALS)`) with the objective as a Python callback, Optuna's
      TPESampler in-process on the same objective and budget, and, for context, the
      engine's random search. One line per run: the best value, the wall time of the run
      and the time spent inside the objective. While the engine has no optimizers, its
      runs are one line `{"runner": "engine", "unavailable": "..."}` and only Optuna runs.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import grpc

from mlbridge import SessionContext
from mlbridge.errors import BridgeError

# The objective: Branin-Hoo, shifted so that its global minimum (reached at three points)
# is 0, so the best value is the regret. Smooth, 2-D, the usual first test of a sampler.
BRANIN_MIN = 0.397887357729738
X_RANGE = (-5.0, 10.0)
Y_RANGE = (0.0, 15.0)
STARTUP_TRIALS = 10  # random trials before TPE models: the engine's default and Optuna's


def branin(x: float, y: float) -> float:
    b = 5.1 / (4 * math.pi**2)
    c = 5 / math.pi
    t = 1 / (8 * math.pi)
    return (y - b * x * x + c * x - 6) ** 2 + 10 * (1 - t) * math.cos(x) + 10 - BRANIN_MIN


class Timed:
    """The objective, counting the time spent inside it."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, x: float, y: float) -> float:
        start = time.perf_counter()
        value = branin(x, y)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return value


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def serve(engine: str) -> None:
    with SessionContext(engine, keep_session=False) as ctx:

        @ctx.register_callback
        def noop() -> None:
            return None

        # The endpoint of the context's callback server (the one the engine dials), so that
        # the bench can also call it directly and tell its cost from the engine's.
        server = ctx._callbacks
        assert server is not None
        # Its secret too: the server answers only calls that present it, as the engine does.
        print(f"SESSION {ctx.session_id} {server.endpoint} {server.secret}", flush=True)
        sys.stdin.read()


class Unavailable(Exception):
    """The engine has no optimizers yet."""


def missing(error: BridgeError) -> bool:
    """Whether `error` says that the engine cannot create optimizers at all (the resource
    RPCs unimplemented, or the optimizer factory not built), as opposed to a real failure."""
    return error.grpc_code == grpc.StatusCode.UNIMPLEMENTED or "not built yet" in error.message


def engine_run(engine: str, sampler: str, trials: int, seed: int) -> None:
    objective = Timed()
    with SessionContext(engine, keep_session=False, timeout=600.0) as ctx:
        ctx.register_variable("x", "float", 0.0, min=X_RANGE[0], max=X_RANGE[1])
        ctx.register_variable("y", "float", 0.0, min=Y_RANGE[0], max=Y_RANGE[1])

        # The engine passes a parameter named like a tuned variable its candidate value.
        def objective_callback(x: float, y: float) -> float:
            return objective(x, y)

        ctx.register_callback(objective_callback, "branin")
        config: dict[str, object] = {
            "variables": ["x", "y"],
            "metric": "branin",
            "direction": "minimize",
            "seed": seed,
        }
        if sampler == "tpe":
            config["startup_trials"] = STARTUP_TRIALS
        try:
            resource = ctx.create_resource("optimizer", sampler, config=config)
        except BridgeError as error:
            if missing(error):
                raise Unavailable(error.message) from error
            raise
        start = time.perf_counter()
        result = ctx.invoke_resource(resource.resource_id, "run", n_trials=trials)
        wall = time.perf_counter() - start
    best = result.get("best") or {}
    emit(
        runner="engine" if sampler == "tpe" else f"engine-{sampler}",
        seed=seed,
        trials=result.get("trials"),
        complete=result.get("complete"),
        metric_calls=objective.calls,
        best=best.get("score"),
        wall_s=wall,
        metric_s=objective.seconds,
    )


def optuna_run(trials: int, seed: int) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = Timed()

    def trial_objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", *X_RANGE)
        y = trial.suggest_float("y", *Y_RANGE)
        return objective(x, y)

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    start = time.perf_counter()
    study.optimize(trial_objective, n_trials=trials)
    wall = time.perf_counter() - start
    emit(
        runner="optuna",
        seed=seed,
        trials=len(study.trials),
        complete=len(study.trials),
        metric_calls=objective.calls,
        best=study.best_value,
        wall_s=wall,
        metric_s=objective.seconds,
    )


def tpe(engine: str, trials: int, seeds: list[int]) -> None:
    import optuna  # imported before any timing

    del optuna
    engine_available = True
    runners = ["tpe", "optuna", "random"]
    for index, seed in enumerate(seeds):
        # Rotate which runner goes first, so that machine noise hits all alike.
        for runner in runners[index % 3 :] + runners[: index % 3]:
            if runner == "optuna":
                optuna_run(trials, seed)
            elif engine_available:
                try:
                    engine_run(engine, runner, trials, seed)
                except Unavailable as error:
                    engine_available = False
                    emit(runner="engine", unavailable=f"engine optimizers missing ({error})")


def main() -> None:
    match sys.argv[1:]:
        case ["serve", engine]:
            serve(engine)
        case ["tpe", engine, trials, *seeds] if seeds:
            tpe(engine, int(trials), [int(seed) for seed in seeds])
        case _:
            sys.exit(__doc__)


if __name__ == "__main__":
    main()
