"""The Python control plane: a Python program asks the engine to tune its variables with
engine-native optimizers, and the engine calls back into this program to score each
candidate.

1. DSPy: a native `Module` wraps DSPy `Predict` with `temperature` and `max_tokens` bound to
   session variables; a TPE optimizer runs the module with each candidate (on the engine's
   Python workers, offline with the echo LM) and scores its outputs with a Python metric.
2. scikit-learn: a TPE optimizer tunes a logistic regression's `C` (searched on a log
   scale, as the variable's metadata asks) against a cross-validation score computed here.

Progress is printed while each run goes; then every trial and the best values as a table.

Usage: python examples/control-plane/tune.py HOST:PORT   (an engine started with --workers)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

from mlbridge import SessionContext, bind
from mlbridge.native import Module, Optimizer, RunResult, Trial


def table(trials: Sequence[Trial], variables: Sequence[str], best: Trial | None) -> str:
    """The trials as a fixed-width table, the best one marked with `*`."""
    header = ["trial", "state", *variables, "score", "ms"]
    rows = []
    for trial in trials:
        score = f"{trial.score:.4f}" if trial.score is not None else (trial.error.type if trial.error else "-")
        cells = [f"{trial.number}{' *' if best is not None and trial.number == best.number else ''}", trial.state.value]
        cells += [_cell(trial.values.get(name)) for name in variables]
        cells += [score, f"{trial.duration * 1000:.1f}"]
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join("    " + line for line in lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def report(title: str, optimizer: Optimizer, result: RunResult, ctx: SessionContext) -> None:
    print(f"\n  {title}: {result.trials} trials ({result.complete} complete, {result.failed} failed, "
          f"{result.timed_out} timed out), finished with {result.finished}")
    print(table(optimizer.trials(), optimizer.variables, result.best))
    if result.best is not None:
        now = ctx.get_variables(optimizer.variables)
        chosen = ", ".join(f"{name} = {_cell(value)}" for name, value in now.items())
        print(f"  best score {result.best.score:.4f} (trial {result.best.number}); the session now has {chosen}")


# -- 1. DSPy Predict's temperature and max_tokens -------------------------------------------------

QUESTION = {"question": "Which planet is known as the red planet?"}


def echoed_settings(answer: str) -> tuple[float, int]:
    """The settings the offline echo LM says it received (a real LM would answer the question)."""
    found = re.search(r"temperature=([0-9.]+), max_tokens=([0-9]+)", answer)
    if found is None:
        raise ValueError(f"unexpected answer {answer!r}")
    return float(found.group(1)), int(found.group(2))


def tune_dspy(ctx: SessionContext) -> None:
    ctx.register_variable("temperature", "float", 1.5, min=0.0, max=2.0, description="DSPy LM temperature")
    ctx.register_variable("max_tokens", "integer", 512, min=16, max=1024, description="DSPy LM token budget")

    def quality(outputs: dict[str, Any]) -> float:
        """Scores one answer of the module. Offline, the echo LM reports the settings it got,
        so this metric rewards the settings a held-out evaluation would have picked (low
        temperature, a budget near 200 tokens); with a real LM, score the answer instead."""
        temperature, max_tokens = echoed_settings(outputs["outputs"]["answer"])
        return 1.0 - 0.5 * abs(temperature - 0.2) - abs(max_tokens - 200) / 1024

    predict = Module(
        ctx,
        "dspy.predict",
        signature="question -> answer",
        inputs=QUESTION,
        temperature=bind("temperature"),
        max_tokens=bind("max_tokens"),
    )
    with predict, Optimizer(
        ctx, "tpe", variables=["temperature", "max_tokens"], metric=quality, module=predict, seed=7, startup_trials=8
    ) as optimizer:
        result = optimizer.run(n_trials=24, progress=True)
        report("DSPy Predict", optimizer, result, ctx)
        # The module now runs with the best settings, read from the session at each call.
        print(f"  predict -> {predict(inputs=QUESTION)['outputs']['answer']}")


# -- 2. a scikit-learn hyper-parameter against a cross-validation score ---------------------------


def tune_sklearn(ctx: SessionContext) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = load_breast_cancer(return_X_y=True)
    ctx.register_variable(
        "C", "float", 1.0, min=1e-4, max=1e2, metadata={"scale": "log"}, description="inverse regularization strength"
    )

    def cross_validation(C: float) -> float:  # noqa: N803 - the variable's name
        """Mean accuracy of a 5-fold cross-validation (computed here, in this program)."""
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        return float(cross_val_score(model, features, labels, cv=5).mean())

    with Optimizer(ctx, "tpe", variables=["C"], metric=cross_validation, seed=7, startup_trials=6) as optimizer:
        result = optimizer.run(n_trials=16, progress=True)
        report("scikit-learn LogisticRegression", optimizer, result, ctx)


def main(address: str) -> None:
    with SessionContext(address) as ctx:
        print(f"session {ctx.session_id}")
        print("\n1. DSPy Predict: temperature and max_tokens (engine TPE; the module runs on the workers)")
        tune_dspy(ctx)
        print("\n2. scikit-learn: LogisticRegression's C on a log scale (engine TPE; cross-validation here)")
        tune_sklearn(ctx)
        for entry in ctx.history("C", limit=3):
            print(f"  history of C: version {entry.version} = {entry.value:.4g} from {entry.source} {dict(entry.metadata)}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
