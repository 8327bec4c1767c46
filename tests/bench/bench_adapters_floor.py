"""The floor for `cargo xtask bench adapters`: the same operations called in-process in
Python, through the same implementation functions a worker calls, with no engine, worker or
network in between. Prints one JSON object per measurement.

Usage: python tests/bench/bench_adapters_floor.py
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from mlbridge.dispatch import Call
from mlbridge.frameworks import builtin, dspy


def measure(name: str, op: Callable[[], object], warmup: int, samples: int) -> None:
    for _ in range(warmup):
        op()
    times: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        op()
        times.append(time.perf_counter() - start)
    times.sort()

    def at(q: float) -> float:
        return times[int((len(times) - 1) * q)] * 1e6

    print(
        json.dumps(
            {
                "name": name,
                "server": "in-process Python",
                "p50_us": round(at(0.5), 1),
                "p99_us": round(at(0.99), 1),
                "ops_per_sec": round(len(times) / sum(times)),
            }
        ),
        flush=True,
    )


def main() -> None:
    measure("noop, 1 client", lambda: builtin.noop(Call()), 1000, 20000)
    inputs = {"question": "What is 2 + 2?"}
    measure(
        "dspy.Predict, echo LM, 1 client",
        lambda: dspy.predict(
            Call(),
            signature="question -> answer",
            inputs=inputs,
            model="mlbridge/echo",
            temperature=0.7,
            max_tokens=256,
        ),
        50,
        500,
    )


if __name__ == "__main__":
    main()
