"""The DSPy adapter (proto/adapters/dspy.toml): `predict`, `chain_of_thought`, the
`dspy_signature_fields` tool, and the offline ``"mlbridge/echo"`` language model.

Every call builds its own LM with `make_lm` and runs the module inside
``dspy.context(lm=...)``: nothing goes through the global ``dspy.configure`` state, so
concurrent calls in one worker never see each other's settings.

The echo LM is a real ``dspy.LM`` whose engine (DSPy 3.4's ``complete(Request) ->
Response`` contract, passed as ``engine=``) answers every output field the prompt asks
for with the settings the request actually carried, e.g.
``echo(model=mlbridge/echo, temperature=0.7, max_tokens=256): question='2+2?'``.
The engine keeps what it received (`EchoEngine.requests`), so a test can check that a
bound variable reached the LM request, not just the module. It needs no network and no
API key.

`apply_bindings` is what the generated ``VariableAwarePredict`` /
``VariableAwareChainOfThought`` classes call before each forward.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import dspy  # type: ignore[import-untyped]
from dspy.lm15 import (  # type: ignore[import-untyped]
    Message,
    Response,
    TextPart,
    Usage,
    response_to_events,
)
from dspy.signatures.signature import ensure_signature  # type: ignore[import-untyped]

from ..dispatch import Call
from ..errors import InvalidArgument

__all__ = [
    "AsyncEchoEngine",
    "BINDABLE",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_TEMPERATURE",
    "ECHO_MODEL",
    "EchoEngine",
    "EchoRequest",
    "apply_bindings",
    "chain_of_thought",
    "make_lm",
    "predict",
    "signature_fields",
]

ECHO_MODEL = "mlbridge/echo"
"""The model name of the offline echo LM."""

DEFAULT_TEMPERATURE = 0.0
"""The manifest's default `temperature`, used when an LM is built for a bound `model`
while `temperature` is not bound."""

DEFAULT_MAX_TOKENS = 256
"""The manifest's default `max_tokens` (see `DEFAULT_TEMPERATURE`)."""

BINDABLE = ("model", "temperature", "max_tokens")
"""The parameters `apply_bindings` accepts (the manifest's bindable parameters)."""

_REASONING = "reasoning"
SIGNATURE_CACHE_SIZE = 256
"""Distinct signature texts whose DSPy classes are kept (least recently used dropped)."""
_FIELD_HEADER = re.compile(r"\[\[ ## (\w+) ## \]\]")
_CHAT_OUTPUTS = re.compile(r"Respond with the corresponding output fields, starting with the field (.*)", re.S)
_JSON_OUTPUTS = re.compile(r"Respond with a JSON object in the following order of fields: (.*)", re.S)
_LISTED_OUTPUTS = re.compile(r"Your output fields are:\n(.*?)(?:\nAll interactions will be structured|\Z)", re.S)
_SUMMARY_VALUE_CHARS = 80


# -- the operations ---------------------------------------------------------------------------


def predict(
    call: Call,
    *,
    signature: str,
    inputs: Mapping[str, Any],
    model: str,
    temperature: float,
    max_tokens: int,
) -> dict[str, object]:
    """Runs ``dspy.Predict(signature)`` on `inputs` with an LM from `make_lm`.

    Returns ``{"outputs": {output field: value}}``. Raises `InvalidArgument` for a
    signature DSPy cannot parse or inputs that do not match its input fields.
    """
    parsed = _parse_signature(signature, "predict")
    _check_inputs(parsed, inputs, "predict")
    lm = make_lm(model, temperature=temperature, max_tokens=max_tokens)
    with dspy.context(lm=lm):
        prediction = dspy.Predict(parsed)(**inputs)
    _label(call, lm, model, temperature, max_tokens)
    return {"outputs": {name: _plain(prediction[name]) for name in parsed.output_fields}}


def chain_of_thought(
    call: Call,
    *,
    signature: str,
    inputs: Mapping[str, Any],
    model: str,
    temperature: float,
    max_tokens: int,
) -> dict[str, object]:
    """Runs ``dspy.ChainOfThought(signature)`` on `inputs` with an LM from `make_lm`.

    Returns ``{"outputs": {output field: value}, "reasoning": str}``: the signature's own
    output fields, and the reasoning DSPy asks the LM for before them.
    """
    parsed = _parse_signature(signature, "chain_of_thought")
    if _REASONING in parsed.output_fields:
        raise InvalidArgument(
            f"chain_of_thought adds its own `{_REASONING}` output field; rename the one in signature {signature!r}",
            context={"parameter": "signature"},
        )
    _check_inputs(parsed, inputs, "chain_of_thought")
    lm = make_lm(model, temperature=temperature, max_tokens=max_tokens)
    with dspy.context(lm=lm):
        prediction = dspy.ChainOfThought(parsed)(**inputs)
    _label(call, lm, model, temperature, max_tokens)
    return {
        "outputs": {name: _plain(prediction[name]) for name in parsed.output_fields},
        "reasoning": str(prediction[_REASONING]),
    }


def signature_fields(call: Call, *, signature: str) -> dict[str, list[str]]:
    """The input and output field names of a DSPy signature, in order:
    ``{"inputs": [...], "outputs": [...]}``."""
    parsed = _parse_signature(signature, "dspy_signature_fields")
    return {"inputs": list(parsed.input_fields), "outputs": list(parsed.output_fields)}


@functools.lru_cache(maxsize=SIGNATURE_CACHE_SIZE)
def _signature_class(signature: str) -> Any:
    """DSPy's Signature class for `signature`, built once per text: building one (a new
    pydantic model) was over a third of a Predict call's time in a worker (py-spy), and
    the class is never changed by the modules that use it. (Failures are not cached.)"""
    return ensure_signature(signature)


def _parse_signature(signature: str, what: str) -> Any:
    try:
        return _signature_class(signature)
    except (ValueError, SyntaxError, TypeError) as error:
        raise InvalidArgument(
            f"{what}: {signature!r} is not a DSPy signature ({error}); expected e.g. \"question -> answer\"",
            context={"parameter": "signature"},
        ) from None


def _check_inputs(parsed: Any, inputs: Mapping[str, Any], what: str) -> None:
    expected = list(parsed.input_fields)
    missing = [name for name in expected if name not in inputs]
    unknown = sorted(name for name in inputs if name not in parsed.input_fields)
    if not parsed.output_fields:
        raise InvalidArgument(
            f"{what}: signature {parsed.signature!r} has no output fields", context={"parameter": "signature"}
        )
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown {', '.join(unknown)}")
        raise InvalidArgument(
            f"{what}: inputs do not match the signature's input fields ({'; '.join(problems)}); "
            f"expected {', '.join(expected) or 'none'}",
            context={"parameter": "inputs"},
        )


def _label(call: Call, lm: Any, model: str, temperature: float, max_tokens: int) -> None:
    call.labels.update(
        {
            "model": model,
            "temperature": repr(temperature),
            "max_tokens": str(max_tokens),
            "lm_calls": str(len(lm.history)),
        }
    )


def _plain(value: object) -> object:
    """Output values as the wire's `Value` can carry them (pydantic models as dicts)."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


# -- language models and bindings -------------------------------------------------------------


def make_lm(model: str, *, temperature: float, max_tokens: int) -> Any:
    """A ``dspy.LM`` for `model` with default request settings `temperature` and
    `max_tokens` (a module's ``config`` still overrides them per call).

    ``"mlbridge/echo"`` gives the offline echo LM: a ``dspy.LM`` driven by an `EchoEngine`
    (reach it as ``lm.engine``), uncached so that every call reaches the engine. Any other
    name gives ``dspy.LM(model, temperature=..., max_tokens=...)``, which talks to the
    provider the name selects when called.
    """
    if model == ECHO_MODEL:
        engine = EchoEngine()
        return dspy.LM(
            model,
            temperature=temperature,
            max_tokens=max_tokens,
            cache=False,
            num_retries=0,
            engine=engine,
            async_engine=AsyncEchoEngine(engine),
        )
    return dspy.LM(model, temperature=temperature, max_tokens=max_tokens)


def apply_bindings(module: Any, values: Mapping[str, object]) -> None:
    """Applies bound values (keys ``model``, ``temperature``, ``max_tokens``) to a
    ``dspy.Predict``, a ``dspy.ChainOfThought`` or any DSPy module, on every predictor it
    contains.

    ``temperature`` and ``max_tokens`` go into each predictor's ``config``, which DSPy
    passes with every LM request (so they win over the LM's own defaults). ``model`` gives
    each predictor an LM from `make_lm`, built only when the model differs from the
    predictor's current LM, so an unchanged model keeps its LM (and its history).
    """
    unknown = sorted(set(values) - set(BINDABLE))
    if unknown:
        raise InvalidArgument(
            f"dspy modules have no bindable parameter {', '.join(repr(name) for name in unknown)}; "
            f"bindable: {', '.join(BINDABLE)}",
            context={"parameter": unknown[0]},
        )
    config: dict[str, object] = {}
    if "temperature" in values:
        config["temperature"] = _number("temperature", values["temperature"])
    if "max_tokens" in values:
        config["max_tokens"] = _integer("max_tokens", values["max_tokens"])
    model = _model(values["model"]) if "model" in values else None
    predictors = module.predictors() if callable(getattr(module, "predictors", None)) else [module]
    for predictor in predictors:
        if config:
            predictor.config = {**predictor.config, **config}
        if model is not None and getattr(predictor.lm, "model", None) != model:
            settings = predictor.config
            predictor.lm = make_lm(
                model,
                temperature=float(settings.get("temperature", DEFAULT_TEMPERATURE)),
                max_tokens=int(settings.get("max_tokens", DEFAULT_MAX_TOKENS)),
            )


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(
            f"bound parameter `{name}` needs a number, got {type(value).__name__} {value!r}",
            context={"parameter": name},
        )
    return float(value)


def _integer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(
            f"bound parameter `{name}` needs an integer, got {type(value).__name__} {value!r}",
            context={"parameter": name},
        )
    return value


def _model(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(
            f"bound parameter `model` needs a model name, got {type(value).__name__} {value!r}",
            context={"parameter": "model"},
        )
    return str(value)


# -- the echo LM ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EchoRequest:
    """One request as the echo engine received it, and what it answered.

    Attributes:
        model: the LM's model name.
        temperature: the request's sampling temperature (None when unset).
        max_tokens: the request's token limit (None when unset).
        inputs: the input fields of the final user message, by name (as DSPy rendered them).
        outputs: the answer given for each output field the prompt asked for.
        text: the complete answer text.
        request: the ``dspy.lm15.Request`` itself.
    """

    model: str
    temperature: float | None
    max_tokens: int | None
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    text: str
    request: Any = field(repr=False)


class EchoEngine:
    """A DSPy 3.4 LM engine (``complete(Request) -> Response``) that answers offline.

    It reads which output fields the prompt asks for (DSPy's chat format ``[[ ## field ## ]]``
    or JSON format), answers each with a text naming the settings the request carried and
    summarizing the inputs, and appends an `EchoRequest` to `requests`. Use it through
    `make_lm` (``make_lm("mlbridge/echo", ...)``) or ``dspy.LM(model, engine=EchoEngine())``.
    """

    def __init__(self) -> None:
        self.requests: list[EchoRequest] = []
        """Every request received, oldest first (list appends are atomic, so concurrent
        calls may share an engine)."""

    @property
    def last(self) -> EchoRequest:
        """The most recent request (IndexError if none was received)."""
        return self.requests[-1]

    def complete(self, request: Any) -> Any:
        """Answers one request."""
        config = request.config
        settings = f"echo(model={request.model}, temperature={config.temperature}, max_tokens={config.max_tokens})"
        user = _last_user_text(request)
        inputs = _input_fields(user)
        summary = ", ".join(f"{name}={_shorten(value)!r}" for name, value in inputs.items()) or "no inputs"
        fields, as_json = _output_fields(request, user)
        outputs = {
            name: f"{settings} reasoned about {summary}" if name == _REASONING else f"{settings}: {summary}"
            for name in fields
        }
        if not outputs:
            text = f"{settings}: {summary}"
        elif as_json:
            text = json.dumps(outputs)
        else:
            text = "".join(f"[[ ## {name} ## ]]\n{value}\n\n" for name, value in outputs.items())
            text += "[[ ## completed ## ]]"
        self.requests.append(
            EchoRequest(
                model=request.model,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                inputs=inputs,
                outputs=outputs,
                text=text,
                request=request,
            )
        )
        return Response(
            id=None,
            model=request.model,
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=0, output_tokens=0),
        )

    def stream(self, request: Any) -> Iterator[Any]:
        """The answer as stream events (one text delta)."""
        return iter(response_to_events(self.complete(request)))

    def close(self) -> None:
        """Nothing to release."""

    def dump_state(self) -> dict[str, Any]:
        """Saved with a program: the engine has no settings (`requests` is not saved)."""
        return {}

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> EchoEngine:
        """A fresh engine (see `dump_state`)."""
        return cls()


class AsyncEchoEngine:
    """The asyncio counterpart of an `EchoEngine`, recording into the same `requests`."""

    def __init__(self, engine: EchoEngine | None = None) -> None:
        self.engine = engine if engine is not None else EchoEngine()

    @property
    def requests(self) -> list[EchoRequest]:
        """The shared engine's requests."""
        return self.engine.requests

    async def complete(self, request: Any) -> Any:
        """Answers one request."""
        return self.engine.complete(request)

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        """The answer as stream events."""
        for event in self.engine.stream(request):
            yield event

    async def aclose(self) -> None:
        """Nothing to release."""

    def dump_state(self) -> dict[str, Any]:
        """See `EchoEngine.dump_state`."""
        return {}

    @classmethod
    def load_state(cls, state: Mapping[str, Any]) -> AsyncEchoEngine:
        """A fresh engine."""
        return cls()


def _message_text(message: Any) -> str:
    return "".join(getattr(part, "text", "") or "" for part in message.parts)


def _last_user_text(request: Any) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return _message_text(message)
    return ""


def _system_text(request: Any) -> str:
    system = request.system
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    return "".join(getattr(part, "text", "") or "" for part in system)


def _input_fields(user: str) -> dict[str, str]:
    """``[[ ## name ## ]]`` sections of the final user message, before the output request."""
    body = re.split(r"\n\s*Respond with ", user, maxsplit=1)[0]
    pieces = _FIELD_HEADER.split(body)
    return {pieces[i]: pieces[i + 1].strip() for i in range(1, len(pieces) - 1, 2)}


def _output_fields(request: Any, user: str) -> tuple[list[str], bool]:
    """The output fields the prompt asks for, and whether it asks for JSON."""
    found = _JSON_OUTPUTS.search(user)
    if found:
        return re.findall(r"`(\w+)`", found.group(1).split("\n", 1)[0]), True
    as_json = request.config.response_format is not None
    found = _CHAT_OUTPUTS.search(user)
    if found:
        names = _FIELD_HEADER.findall(found.group(1).split("\n", 1)[0])
        return [name for name in names if name != "completed"], as_json
    listed = _LISTED_OUTPUTS.search(_system_text(request))
    if listed:
        return re.findall(r"^\d+\. `(\w+)`", listed.group(1), re.M), as_json
    return [], as_json


def _shorten(value: str) -> str:
    value = " ".join(value.split())
    if len(value) > _SUMMARY_VALUE_CHARS:
        return value[: _SUMMARY_VALUE_CHARS - 1] + "…"
    return value
