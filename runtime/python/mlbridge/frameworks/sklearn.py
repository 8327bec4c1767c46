"""The scikit-learn adapter (proto/adapters/sklearn.toml): `logistic_regression` and
`svc_pipeline`.

Each call loads a dataset bundled with scikit-learn, splits it (stratified, seeded by
`random_state`), builds a fresh estimator, applies the hyper-parameters with
``set_params`` (the keywords the manifest's ``python_name`` gives, which the generated
``VariableAware`` classes bind to variables), fits, predicts and scores. Nothing is kept
between calls and nothing is pickled: a result is plain numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from sklearn.datasets import (  # type: ignore[import-untyped]
    load_breast_cancer,
    load_digits,
    load_iris,
    load_wine,
)
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.model_selection import train_test_split  # type: ignore[import-untyped]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]
from sklearn.svm import SVC  # type: ignore[import-untyped]

from ..dispatch import Call
from ..errors import InvalidArgument

__all__ = ["DATASETS", "Split", "load_split", "logistic_regression", "svc_pipeline"]

DATASETS: Mapping[str, Callable[..., Any]] = MappingProxyType(
    {
        "iris": load_iris,
        "wine": load_wine,
        "breast_cancer": load_breast_cancer,
        "digits": load_digits,
    }
)
"""The bundled datasets by the manifest's `dataset` choice."""


class Split:
    """A stratified train/test split of a bundled dataset."""

    def __init__(self, dataset: str, test_size: float, random_state: int) -> None:
        loader = DATASETS.get(dataset)
        if loader is None:
            raise InvalidArgument(
                f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}",
                context={"parameter": "dataset"},
            )
        features, target = loader(return_X_y=True)
        try:
            parts = train_test_split(
                features, target, test_size=test_size, random_state=random_state, stratify=target
            )
        except ValueError as error:
            raise InvalidArgument(
                f"test_size {test_size} cannot split dataset {dataset!r} ({len(target)} samples): {error}",
                context={"parameter": "test_size"},
            ) from None
        self.dataset = dataset
        self.x_train, self.x_test, self.y_train, self.y_test = parts

    @property
    def n_train(self) -> int:
        """Samples used to fit."""
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        """Samples predicted and scored."""
        return len(self.y_test)


def load_split(dataset: str, test_size: float, random_state: int) -> Split:
    """Loads `dataset` and splits it as the operations do (stratified on the target)."""
    return Split(dataset, test_size, random_state)


def logistic_regression(
    call: Call, *, dataset: str, test_size: float, random_state: int, c: float, max_iter: int
) -> dict[str, object]:
    """Fits ``LogisticRegression`` with ``set_params(C=c, max_iter=max_iter)`` on the train
    split, then predicts and scores the test split."""
    estimator = LogisticRegression()
    estimator.set_params(C=c, max_iter=max_iter)
    split = Split(dataset, test_size, random_state)
    result = _fit_and_score(estimator, split)
    iterations = int(max(estimator.n_iter_))
    call.labels.update(
        {
            "estimator": "sklearn.linear_model.LogisticRegression",
            "dataset": dataset,
            "n_iter": str(iterations),
            "converged": "true" if iterations < max_iter else "false",
        }
    )
    return result


def svc_pipeline(
    call: Call, *, dataset: str, test_size: float, random_state: int, c: float, kernel: str
) -> dict[str, object]:
    """Fits ``Pipeline([("scale", StandardScaler()), ("svc", SVC())])`` with
    ``set_params(svc__C=c, svc__kernel=kernel)`` on the train split, then predicts and
    scores the test split."""
    estimator = Pipeline([("scale", StandardScaler()), ("svc", SVC())])
    estimator.set_params(svc__C=c, svc__kernel=str(kernel))
    split = Split(dataset, test_size, random_state)
    result = _fit_and_score(estimator, split)
    call.labels.update(
        {
            "estimator": "sklearn.pipeline.Pipeline(StandardScaler, SVC)",
            "dataset": dataset,
            "n_support_vectors": str(int(sum(estimator.named_steps["svc"].n_support_))),
        }
    )
    return result


def _fit_and_score(estimator: Any, split: Split) -> dict[str, object]:
    estimator.fit(split.x_train, split.y_train)
    predictions = estimator.predict(split.x_test)
    return {
        "accuracy": float(estimator.score(split.x_test, split.y_test)),
        "predictions": [int(label) for label in predictions],
        "n_train": split.n_train,
        "n_test": split.n_test,
    }
