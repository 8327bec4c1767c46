"""The Python-orchestrated way of use: a Python program drives a session on the engine,
reads and writes typed variables, watches them change, and calls Rust host tools.

Usage: python examples/python/orchestrated.py HOST:PORT | unix:PATH
"""

from __future__ import annotations

import sys
import time

import mlbridge
from mlbridge import Constraints, SessionContext


def main(address: str) -> None:
    with SessionContext(address) as ctx:
        print(f"session {ctx.session_id}")

        # Typed, constrained variables; the engine is the source of truth.
        ctx.register_variable("temperature", "float", 0.7, Constraints(min=0.0, max=2.0))
        ctx.register_variable("model", "choice", "gpt-small", Constraints(choices=("gpt-small", "gpt-large")))
        ctx.register_variable("max_tokens", "integer", 256, Constraints(min=1, max=4096))
        print(f"temperature = {ctx['temperature']}, model = {ctx.v.model}, max_tokens = {ctx.v.max_tokens}")

        # Bad values are refused before they leave the process, with the engine's message.
        try:
            ctx["temperature"] = 3.5
        except mlbridge.ConstraintViolation as error:
            print(f"refused: {error.message}")

        # A second client (another process, in real life) writes; our cached read sees it
        # as soon as the watch delivers the change, long before the cache TTL.
        with SessionContext(address, ctx.session_id) as other:
            other["temperature"] = 0.2
        written = time.perf_counter()
        while ctx["temperature"] != 0.2 and time.perf_counter() - written < 2.0:
            time.sleep(0.0005)  # the watch delivers the change asynchronously
        seen_ms = (time.perf_counter() - written) * 1e3
        print(f"after another client's write: temperature = {ctx['temperature']} (seen within {seen_ms:.1f} ms)")

        # Atomic batches: all or nothing.
        with ctx.batch() as batch:
            batch["temperature"] = 0.9
            batch["max_tokens"] = 512
        print(f"batch applied: {ctx.get_variables(['temperature', 'max_tokens'])}")

        # History and rollback.
        versions = [(entry.version, entry.value) for entry in ctx.history("temperature")]
        print(f"temperature history (newest first): {versions}")
        ctx.rollback("temperature", versions[-1][0])
        print(f"rolled back to the first version: temperature = {ctx['temperature']}")

        # Watch: every change after a point in the session's history, in order, even the
        # ones made before the stream was open.
        start = ctx.get_session().current_sequence
        for value in (1.0, 1.1, 1.2):
            ctx["temperature"] = value
        watch = ctx.watch(["temperature"], include_initial=False, from_version=start)
        seen = [(update.version, update.value) for _, update in zip(range(3), watch)]
        watch.close()
        print(f"watched updates (version, value): {seen}")

        # Rust host tools, as typed proxies with signatures from the Rust code.
        print(f"tools: {', '.join(sorted(ctx.tools))}")
        print(f"tools.add(a=2, b=3.5) = {ctx.tools.add(a=2, b=3.5)}")
        print(f"tools.word_count(text=...) = {ctx.tools.word_count(text='the quick brown fox')}")
        print(f"tools.count.stream(to=4) = {list(ctx.tools.count.stream(to=4))}")
        try:
            ctx.tools.fail(message="a Rust tool failed on purpose")
        except mlbridge.ToolError as error:
            print(f"ToolError from Rust: {error.message}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
