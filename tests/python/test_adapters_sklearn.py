"""The scikit-learn adapter's implementation functions (mlbridge.frameworks.sklearn), called
directly and through an `Adapter` shaped like the generated dispatch: bundled datasets,
stratified splits, hyper-parameters applied with set_params, plain results."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pytest
from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]

from mlbridge import InvalidArgument
from mlbridge.dispatch import Adapter, Call, OperationSpec, ParameterSpec, ResultSpec
from mlbridge.value_types import Constraints, VariableType
from mlbridge.values import from_value, to_value
from mlbridge.frameworks import sklearn as adapter

# The sizes of the bundled datasets and their classes.
SIZES = {"iris": (150, 3), "wine": (178, 3), "breast_cancer": (569, 2), "digits": (1797, 10)}


def test_logistic_regression_on_iris_is_accurate_and_reports_the_split() -> None:
    call = Call()
    result = adapter.logistic_regression(call, dataset="iris", test_size=0.25, random_state=0, c=1.0, max_iter=1000)
    assert set(result) == {"accuracy", "predictions", "n_train", "n_test"}
    assert isinstance(result["accuracy"], float) and result["accuracy"] > 0.8
    assert (result["n_train"], result["n_test"]) == (112, 38)
    predictions = result["predictions"]
    assert isinstance(predictions, list) and len(predictions) == 38
    assert all(type(label) is int for label in predictions) and set(predictions) <= {0, 1, 2}
    assert call.labels["estimator"] == "sklearn.linear_model.LogisticRegression"
    assert call.labels["dataset"] == "iris" and call.labels["converged"] == "true"


@pytest.mark.parametrize("dataset", sorted(SIZES))
def test_every_bundled_dataset_splits_as_asked(dataset: str) -> None:
    samples, classes = SIZES[dataset]
    result = adapter.svc_pipeline(Call(), dataset=dataset, test_size=0.3, random_state=1, c=1.0, kernel="rbf")
    assert result["n_train"] + result["n_test"] == samples  # type: ignore[operator]
    assert result["n_test"] == adapter.load_split(dataset, 0.3, 1).n_test
    assert result["accuracy"] > 0.8  # type: ignore[operator]
    assert set(result["predictions"]) <= set(range(classes))  # type: ignore[call-overload]


def test_svc_pipeline_on_wine_applies_c_and_kernel() -> None:
    call = Call()
    linear = adapter.svc_pipeline(call, dataset="wine", test_size=0.25, random_state=0, c=1.0, kernel="linear")
    assert linear["accuracy"] > 0.9 and linear["n_test"] == 45  # type: ignore[operator]
    assert call.labels["estimator"].startswith("sklearn.pipeline.Pipeline")
    # A tiny C with a linear kernel keeps nearly every training sample as a support vector.
    tiny = Call()
    adapter.svc_pipeline(tiny, dataset="wine", test_size=0.25, random_state=0, c=0.001, kernel="linear")
    assert int(tiny.labels["n_support_vectors"]) > int(call.labels["n_support_vectors"])


def test_hyper_parameters_change_the_model() -> None:
    weak = adapter.logistic_regression(Call(), dataset="iris", test_size=0.25, random_state=0, c=1e-4, max_iter=1000)
    strong = adapter.logistic_regression(Call(), dataset="iris", test_size=0.25, random_state=0, c=1.0, max_iter=1000)
    assert weak["predictions"] != strong["predictions"]
    assert strong["accuracy"] > weak["accuracy"]  # type: ignore[operator]
    call = Call()
    with pytest.warns(ConvergenceWarning):
        adapter.logistic_regression(call, dataset="iris", test_size=0.25, random_state=0, c=1.0, max_iter=2)
    assert (call.labels["n_iter"], call.labels["converged"]) == ("2", "false")


def test_calls_are_deterministic_and_independent() -> None:
    first = adapter.logistic_regression(Call(), dataset="iris", test_size=0.2, random_state=7, c=0.5, max_iter=1000)
    adapter.svc_pipeline(Call(), dataset="iris", test_size=0.5, random_state=3, c=10.0, kernel="poly")
    again = adapter.logistic_regression(Call(), dataset="iris", test_size=0.2, random_state=7, c=0.5, max_iter=1000)
    assert first == again


def test_bad_arguments_raise_invalid_argument_naming_the_parameter() -> None:
    with pytest.raises(InvalidArgument, match="unknown dataset 'mnist'") as error:
        adapter.logistic_regression(Call(), dataset="mnist", test_size=0.25, random_state=0, c=1.0, max_iter=100)
    assert error.value.context["parameter"] == "dataset"
    # Two test samples cannot hold one of each of iris's three classes.
    with pytest.raises(InvalidArgument, match="test_size 0.01 cannot split dataset 'iris'") as error:
        adapter.svc_pipeline(Call(), dataset="iris", test_size=0.01, random_state=0, c=1.0, kernel="rbf")
    assert error.value.context["parameter"] == "test_size"


def _dataset_params(*extra: ParameterSpec) -> tuple[ParameterSpec, ...]:
    return (
        ParameterSpec(
            "dataset",
            VariableType.CHOICE,
            default="iris",
            has_default=True,
            constraints=Constraints(choices=list(adapter.DATASETS)),
        ),
        ParameterSpec("test_size", VariableType.FLOAT, default=0.25, has_default=True),
        ParameterSpec("random_state", VariableType.INTEGER, default=0, has_default=True),
        *extra,
    )


RESULTS = (
    ResultSpec("accuracy", VariableType.FLOAT),
    ResultSpec("predictions", VariableType.LIST),
    ResultSpec("n_train", VariableType.INTEGER),
    ResultSpec("n_test", VariableType.INTEGER),
)


def _logistic(module: ModuleType, call: Call, arguments: Mapping[str, Any]) -> Mapping[str, object]:
    return module.logistic_regression(call, **arguments)  # type: ignore[no-any-return]


def _svc(module: ModuleType, call: Call, arguments: Mapping[str, Any]) -> Mapping[str, object]:
    return module.svc_pipeline(call, **arguments)  # type: ignore[no-any-return]


# What the generator emits for sklearn.toml, by hand: the implementation must fit it.
ADAPTER = Adapter(
    framework="sklearn",
    implementation="mlbridge.frameworks.sklearn",
    package="sklearn",
    operations=(
        OperationSpec(
            "logistic_regression",
            "estimator",
            _logistic,
            _dataset_params(
                ParameterSpec("c", VariableType.FLOAT, default=1.0, has_default=True, bindable=True, python_name="C"),
                ParameterSpec("max_iter", VariableType.INTEGER, default=1000, has_default=True, bindable=True),
            ),
            RESULTS,
        ),
        OperationSpec(
            "svc_pipeline",
            "estimator",
            _svc,
            _dataset_params(
                ParameterSpec("c", VariableType.FLOAT, default=1.0, has_default=True, bindable=True, python_name="svc__C"),
                ParameterSpec(
                    "kernel",
                    VariableType.CHOICE,
                    default="rbf",
                    has_default=True,
                    bindable=True,
                    python_name="svc__kernel",
                    constraints=Constraints(choices=["linear", "poly", "rbf", "sigmoid"]),
                ),
            ),
            RESULTS,
        ),
    ),
)


def test_results_encode_through_an_adapter_like_the_generated_dispatch() -> None:
    call = Call()
    encoded = ADAPTER.execute(
        "svc_pipeline",
        {"dataset": to_value("breast_cancer", VariableType.CHOICE), "kernel": to_value("linear", VariableType.CHOICE)},
        call,
    )
    decoded = {name: from_value(value) for name, value in encoded.items()}
    assert decoded["accuracy"] > 0.9 and decoded["n_test"] == 143
    assert len(decoded["predictions"]) == 143
    encoded = ADAPTER.execute("logistic_regression", {}, Call())
    assert from_value(encoded["accuracy"]) > 0.8
    assert ADAPTER.describe().version  # sklearn's __version__
