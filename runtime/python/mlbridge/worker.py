"""The Python worker, serving the `mlbridge.v1.Worker` requests (framework operations and
Python tools) of the adapters it loads: by default each ``mlbridge_adapters.<id>.dispatch``
module that defines ``ADAPTER``, or exactly the modules named with ``--adapter``.

* ``--connect ENGINE``: the worker dials and serves over one stream it keeps open (see
  `mlbridge.attached`). The engine spawns its workers so, with ``--worker-id`` and the
  pool's private socket; a worker started elsewhere presents the engine's attach token
  (``--token-file``) and gets its id from the engine.
* ``--listen ADDR --worker-id ID``: the worker serves the `Worker` gRPC service itself,
  printing ``MLBRIDGE_WORKER_READY <address>`` once it does (for tools that call a worker
  directly).

A worker the engine spawned exits on its own when its stdin reaches end of file: the
engine holds the write end of that pipe, so however the engine dies, its workers follow.
SIGTERM and SIGINT stop it cleanly too. Logs go to stderr; stdout carries only the ready
line (and whatever framework code prints, which the engine drains).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import os
import pkgutil
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import FrameType

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from mlbridge_proto import ml_bridge_pb2 as pb
from mlbridge_proto import ml_bridge_pb2_grpc as pb_grpc

from . import __version__, telemetry
from .auth import WORKER_SECRET_ENV, RequireSecret
from .dispatch import Adapter, Call, elapsed_us
from .errors import (
    BridgeError,
    InternalError,
    OperationNotFound,
    ToolNotFound,
    clip,
    send_error,
)

__all__ = ["ATTACHED_PREFIX", "READY_PREFIX", "WorkerService", "discover_adapters", "load_adapter", "main", "serve"]

READY_PREFIX = "MLBRIDGE_WORKER_READY"
"""The first word of the one line a worker prints on stdout once it serves."""

ATTACHED_PREFIX = "MLBRIDGE_WORKER_ATTACHED"
"""The first word of the line an attached worker prints once the engine took it, followed
by the id the engine gave it."""

ATTACH_TOKEN_ENV = "MLBRIDGE_ATTACH_TOKEN"
"""Where ``--connect`` finds the engine's attach token without ``--token-file``."""

PROTOCOL_VERSION = "mlbridge.v1"

_log = logging.getLogger("mlbridge.worker")



class AdapterLoadError(Exception):
    """An adapter module could not be imported or loaded; the message names it."""


def load_adapter(module: str) -> Adapter:
    """The `Adapter` that `module` defines as ``ADAPTER``, or that ``<module>.dispatch``
    does (so both ``mlbridge_adapters.dspy`` and ``mlbridge_adapters.dspy.dispatch`` work),
    with its framework imported."""
    candidates = [module] if module.endswith(".dispatch") else [module, f"{module}.dispatch"]
    found: Adapter | None = None
    for name in candidates:
        try:
            imported = importlib.import_module(name)
        except ModuleNotFoundError as error:
            # A missing `<module>.dispatch` means "the module itself is the dispatch"; any
            # other missing module (the one named, or an import inside it) is a failure.
            if name != candidates[0] and error.name == name:
                continue
            raise AdapterLoadError(f"cannot import adapter module {name!r}: {error}") from error
        except Exception as error:
            raise AdapterLoadError(f"cannot import adapter module {name!r}: {error}") from error
        adapter = getattr(imported, "ADAPTER", None)
        if isinstance(adapter, Adapter):
            found = adapter
            break
    if found is None:
        raise AdapterLoadError(f"adapter module {module!r} defines no ADAPTER (looked in {', '.join(candidates)})")
    try:
        found.load()
    except Exception as error:
        raise AdapterLoadError(
            f"adapter {found.framework!r} (module {module!r}) cannot load its framework "
            f"{found.package or found.implementation!r}: {type(error).__name__}: {error}"
        ) from error
    return found


def discover_adapters(package: str) -> list[Adapter]:
    """Every adapter of `package`: each subpackage ``<package>.<id>`` with a ``dispatch``
    module defining ``ADAPTER``, loaded, sorted by framework id."""
    try:
        root = importlib.import_module(package)
    except Exception as error:
        raise AdapterLoadError(f"cannot import adapters package {package!r}: {error}") from error
    adapters: list[Adapter] = []
    for info in pkgutil.iter_modules(getattr(root, "__path__", [])):
        if not info.ispkg:
            continue
        name = f"{package}.{info.name}"
        try:
            if importlib.util.find_spec(f"{name}.dispatch") is None:
                continue
        except ImportError as error:
            raise AdapterLoadError(f"cannot import adapter package {name!r}: {error}") from error
        adapters.append(load_adapter(f"{name}.dispatch"))
    return sorted(adapters, key=lambda adapter: adapter.framework)


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1_000_000_000))
    return stamp


def _call(
    session_id: str,
    engine_address: str,
    metadata: Mapping[str, str],
    bindings: Mapping[str, pb.BoundVariable] | None = None,
    session_token: str = "",
) -> Call:
    return Call(
        session_id=session_id,
        engine_address=engine_address,
        session_token=session_token,
        bindings={name: (bound.variable_name, bound.version) for name, bound in (bindings or {}).items()},
        metadata=dict(metadata),
    )


class WorkerService(pb_grpc.WorkerServicer):
    """The `mlbridge.v1.Worker` service over a set of adapters."""

    def __init__(self, worker_id: str, adapters: Sequence[Adapter], started_at: float | None = None) -> None:
        self.worker_id = worker_id
        self.origin = f"worker:{worker_id}"
        self.adapters = {adapter.framework: adapter for adapter in adapters}
        self.tools: dict[str, Adapter] = {}
        for adapter in sorted(adapters, key=lambda a: a.framework):
            for tool in adapter.tools:
                owner = self.tools.setdefault(tool, adapter)
                if owner is not adapter:
                    _log.warning(
                        "tool %r is offered by both %r and %r; %r serves it",
                        tool,
                        owner.framework,
                        adapter.framework,
                        owner.framework,
                    )
        self.started_at = time.time() if started_at is None else started_at

    # -- errors ----------------------------------------------------------------------------

    def _error(self, error: BaseException) -> BridgeError:
        """`error` as the BridgeError to send: ours as is, anything else as INTERNAL with its
        type and traceback."""
        if isinstance(error, BridgeError):
            bridge = error
        else:
            kind = type(error)
            remote_type = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
            bridge = InternalError(
                f"worker {self.worker_id} failed: {remote_type}: {error}",
                remote_type=remote_type,
                remote_traceback="".join(traceback.format_exception(error)),
            )
        if not bridge.origin:
            bridge.origin = self.origin
        bridge.context.setdefault("worker_id", self.worker_id)
        return bridge

    def _fail(self, context: grpc.ServicerContext, error: BaseException) -> None:
        """Ends the call with `error`'s status code and message, and the serialized
        BridgeError in the ``grpc-status-details-bin`` trailer."""
        bridge = self._error(error)
        if not isinstance(error, BridgeError):
            _log.error("unexpected failure: %s", bridge.remote_traceback.rstrip())
        send_error(context, bridge)

    def _adapter(self, framework: str, operation: str) -> Adapter:
        try:
            return self.adapters[framework]
        except KeyError:
            raise OperationNotFound(
                f"worker {self.worker_id} has no framework {clip(framework)!r}; "
                f"it has {', '.join(sorted(self.adapters)) or 'none'}",
                context={"framework": framework, "operation": operation},
            ) from None

    def _tool_owner(self, name: str) -> Adapter:
        try:
            return self.tools[name]
        except KeyError:
            raise ToolNotFound(
                f"worker {self.worker_id} has no tool {clip(name)!r}; it has {', '.join(sorted(self.tools)) or 'none'}",
                context={"tool": name},
            ) from None

    # -- the service -----------------------------------------------------------------------

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingResponse:
        response = pb.PingResponse(
            message=request.message,
            server_id=self.worker_id,
            protocol_version=PROTOCOL_VERSION,
            server_version=__version__,
        )
        response.server_time.GetCurrentTime()
        return response

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.DescribeResponse:
        try:
            return pb.DescribeResponse(
                worker_id=self.worker_id,
                pid=os.getpid(),
                frameworks=[self.adapters[name].describe() for name in sorted(self.adapters)],
                python_version=platform.python_version(),
                mlbridge_version=__version__,
                protocol_version=PROTOCOL_VERSION,
                started_at=_timestamp(self.started_at),
            )
        except BaseException as error:
            self._fail(context, error)
            return pb.DescribeResponse()

    def ExecuteFrameworkOperation(
        self, request: pb.WorkerExecuteFrameworkOperationRequest, context: grpc.ServicerContext
    ) -> pb.ExecuteFrameworkOperationResponse:
        start = time.perf_counter()
        call = _call(request.session_id, request.engine_address, request.metadata, request.bindings, request.session_token)
        try:
            adapter = self._adapter(request.framework, request.operation)
            results = adapter.execute(request.operation, request.parameters, call)
            return pb.ExecuteFrameworkOperationResponse(
                results=results,
                worker_id=self.worker_id,
                execution_us=elapsed_us(start),
                metadata=call.labels,
            )
        except BaseException as error:
            self._fail(context, error)
            return pb.ExecuteFrameworkOperationResponse()
        finally:
            self._close(call)

    def ExecuteTool(self, request: pb.WorkerExecuteToolRequest, context: grpc.ServicerContext) -> pb.ExecuteToolResponse:
        start = time.perf_counter()
        call = _call(request.session_id, request.engine_address, request.metadata, session_token=request.session_token)
        try:
            result = self._tool_owner(request.tool_name).execute_tool(request.tool_name, request.arguments, call)
            return pb.ExecuteToolResponse(
                result=result,
                metadata=call.labels,
                duration_us=elapsed_us(start),
                worker_id=self.worker_id,
            )
        except BaseException as error:
            self._fail(context, error)
            return pb.ExecuteToolResponse()
        finally:
            self._close(call)

    def ExecuteStreamingTool(
        self, request: pb.WorkerExecuteStreamingToolRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ToolChunk]:
        call = _call(request.session_id, request.engine_address, request.metadata, session_token=request.session_token)
        sequence = 0
        try:
            owner = self._tool_owner(request.tool_name)
            for value in owner.stream_tool(request.tool_name, request.arguments, call):
                yield pb.ToolChunk(sequence=sequence, data=value)
                sequence += 1
            yield pb.ToolChunk(sequence=sequence, is_final=True, metadata=call.labels)
        except BaseException as error:
            self._fail(context, error)
        finally:
            self._close(call)

    def _close(self, call: Call) -> None:
        try:
            call.close()
        except Exception:  # a failing close must not replace the call's own outcome
            _log.warning("closing the session of a call failed", exc_info=True)


class _Stop:
    """Why and when the worker should stop: stdin EOF, SIGTERM or SIGINT."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self.serving = False

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()
        if not self.serving:
            # Still importing frameworks, which cannot be interrupted: nobody is waiting
            # for this worker any more, so leave at once.
            print(f"mlbridge worker: {reason} before it was ready; exiting", file=sys.stderr, flush=True)
            os._exit(0)

    def wait(self) -> str:
        # A bounded wait keeps the main thread responsive to signals on every platform.
        while not self.event.wait(0.5):
            pass
        return self.reason


def _watch_stdin(stop: _Stop) -> None:
    try:
        descriptor = sys.stdin.fileno()
        while os.read(descriptor, 65536):
            pass
    except (AttributeError, OSError, ValueError):
        pass  # no usable stdin counts as closed
    stop.set("stdin closed")


def serve(
    listen: str,
    worker_id: str,
    adapters: Sequence[Adapter],
    *,
    threads: int = 64,
    started_at: float | None = None,
    secret: str = "",
) -> tuple[grpc.Server, str]:
    """Starts the Worker service on `listen` (``host:port``, port 0 picks one, or
    ``unix:PATH``) and returns the server and the address it is bound to. With a
    `secret`, every call must carry ``authorization: Bearer <secret>`` (UNAUTHENTICATED
    otherwise): the engine gives it to the workers it spawns."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"mlbridge-{worker_id}"),
        options=[
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
        interceptors=[RequireSecret(secret, "worker"), *telemetry.server_interceptors()],
    )
    pb_grpc.add_WorkerServicer_to_server(WorkerService(worker_id, adapters, started_at), server)
    if listen.startswith("unix:"):
        path = listen[len("unix:") :]
        if os.path.exists(path):
            os.unlink(path)  # a stale socket from an earlier worker in this slot
        server.add_insecure_port(listen)
        address = listen
    else:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"invalid listen address {listen!r}: expected HOST:PORT or unix:PATH")
        bound = server.add_insecure_port(listen)
        if bound == 0:
            raise OSError(f"cannot listen on {listen!r}")
        address = f"{host}:{bound}"
    server.start()
    return server, address


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlbridge.worker",
        description="Serve mlbridge framework adapters to the engine (mlbridge.v1.Worker).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--listen", help="serve the Worker service on HOST:PORT (port 0 picks one) or unix:PATH")
    where.add_argument(
        "--connect",
        metavar="ENGINE",
        help="attach to the engine at HOST:PORT or unix:PATH and serve it over that connection",
    )
    parser.add_argument("--worker-id", help="the id the engine gave this worker (with --listen)")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"with --connect: the file holding the engine's attach token [default: ${ATTACH_TOKEN_ENV}]",
    )
    parser.add_argument(
        "--token",
        help="with --connect: the attach token itself (visible to other users in the process "
        "list; prefer --token-file)",
    )
    parser.add_argument("--name", help="with --connect: this worker's name in the engine's logs [default: host name]")
    parser.add_argument("--tls-ca", metavar="PEM", help="with --connect: dial the engine over TLS, trusting this CA")
    parser.add_argument(
        "--adapter",
        action="append",
        default=[],
        metavar="MODULE",
        help="load exactly this adapter (e.g. mlbridge_adapters.dspy); repeatable; default: all",
    )
    parser.add_argument(
        "--adapters-package",
        default="mlbridge_adapters",
        metavar="PACKAGE",
        help="package whose subpackages are discovered when no --adapter is given",
    )
    parser.add_argument("--threads", type=int, default=64, help="concurrent calls at most")
    parser.add_argument(
        "--ignore-stdin-eof",
        action="store_true",
        help="keep running when stdin closes (for running a worker by hand)",
    )
    args = parser.parse_args(argv)
    if args.listen is not None and not args.worker_id:
        parser.error("--listen needs --worker-id")
    # With --connect, a --worker-id means the engine spawned this worker (it dials the
    # pool's own socket); without, an operator started it elsewhere.
    args.spawned = args.listen is not None or args.worker_id is not None
    if args.connect is not None:
        args.worker_id = args.worker_id or "attaching"
    return args


def _attach_token(args: argparse.Namespace, from_env: str) -> str:
    """The attach token from --token-file, --token or the environment; empty when none is
    given."""
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as file:
            return file.read().strip()
    return (args.token or from_env).strip()


def main(argv: Sequence[str] | None = None) -> int:
    """Runs a worker until stdin closes or SIGTERM/SIGINT; returns the exit status."""
    args = _parse(argv)
    started_at = time.time()
    # The engine's secret for this worker; taken out of the environment so that framework
    # code and its subprocesses do not see it.
    secret = os.environ.pop(WORKER_SECRET_ENV, "")
    # Likewise the attach token, before any adapter is imported.
    attach_token = os.environ.pop(ATTACH_TOKEN_ENV, "")
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format=f"%(asctime)s %(name)s[{args.worker_id}] %(levelname)s %(message)s",
    )
    telemetry.configure_worker("mlbridge-worker")
    stop = _Stop()
    # Watched from the start: an engine that dies while this worker imports its frameworks
    # must not leave it behind.
    # A worker started elsewhere is nobody's child: its stream to the engine is its lifeline.
    if not args.ignore_stdin_eof and args.spawned:
        threading.Thread(target=_watch_stdin, args=(stop,), name="mlbridge-stdin", daemon=True).start()
    try:
        if args.adapter:
            adapters = [load_adapter(module) for module in args.adapter]
        else:
            adapters = discover_adapters(args.adapters_package)
    except AdapterLoadError as error:
        cause = error.__cause__
        detail = ""
        # A module that simply does not exist needs no traceback; anything raised while
        # importing one does.
        if cause is not None and not (
            isinstance(cause, ModuleNotFoundError)
            and any(m == cause.name or m.startswith(f"{cause.name}.") for m in args.adapter or [args.adapters_package])
        ):
            detail = "".join(traceback.format_exception(cause))
        print(f"mlbridge worker {args.worker_id}: {error}\n{detail}", file=sys.stderr, flush=True)
        return 2
    if not adapters:
        print(
            f"mlbridge worker {args.worker_id}: no adapters found in package {args.adapters_package!r} "
            "(expected subpackages with a dispatch module defining ADAPTER)",
            file=sys.stderr,
            flush=True,
        )
        return 2

    def on_signal(number: int, frame: FrameType | None) -> None:
        stop.set(signal.Signals(number).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.connect is not None:
        return _run_attached(args, adapters, started_at, stop, attach_token)
    try:
        server, address = serve(
            args.listen, args.worker_id, adapters, threads=max(2, args.threads), started_at=started_at, secret=secret
        )
    except (OSError, ValueError, RuntimeError) as error:
        print(f"mlbridge worker {args.worker_id}: cannot serve on {args.listen!r}: {error}", file=sys.stderr, flush=True)
        return 2
    stop.serving = True
    _log.info(
        "serving %s on %s (pid %d)", ", ".join(adapter.framework for adapter in adapters), address, os.getpid()
    )
    sys.stdout.write(f"{READY_PREFIX} {address}\n")
    sys.stdout.flush()

    reason = stop.wait()
    _log.info("stopping: %s", reason)
    server.stop(grace=1.0).wait()
    telemetry.shutdown()
    # Calls still running after the grace period are abandoned: a worker must never
    # outlive its engine because a framework call does not return.
    _exit_later(1.0)
    if args.listen.startswith("unix:"):
        try:
            os.unlink(args.listen[len("unix:") :])
        except OSError:
            pass
    return 0


def _run_attached(
    args: argparse.Namespace, adapters: Sequence[Adapter], started_at: float, stop: _Stop, from_env: str
) -> int:
    """Serves the engine at ``--connect`` over one attached stream until it ends (status 1)
    or a signal stops the worker (status 0); a refused attachment is status 2."""
    from .attached import AttachedWorker, Detached
    from .channel import TlsConfig

    token = _attach_token(args, from_env)
    if not token:
        print(
            f"mlbridge worker: --connect needs the engine's attach token (--token-file FILE or ${ATTACH_TOKEN_ENV})",
            file=sys.stderr,
            flush=True,
        )
        return 2
    name = args.name or (args.worker_id if args.spawned else platform.node())
    service = WorkerService(name, adapters, started_at)
    tls = TlsConfig.from_files(args.tls_ca) if args.tls_ca else None
    # A worker started elsewhere calls back where it dialed; one the engine spawned dials
    # the pool's private socket and calls back where the engine says.
    worker = AttachedWorker(
        args.connect,
        token,
        service,
        name=name,
        threads=max(2, args.threads),
        tls=tls,
        engine_address=None if args.spawned else args.connect,
    )
    outcome = {"status": 0}

    def attached(worker_id: str) -> None:
        _log.info("attached to %s as %s, serving %s", args.connect, worker_id, ", ".join(a.framework for a in adapters))
        sys.stdout.write(f"{ATTACHED_PREFIX} {worker_id}\n")
        sys.stdout.flush()

    def run() -> None:
        try:
            worker.run(on_attached=attached)
        except Detached as detached:
            outcome["status"] = 1
            stop.set(f"the stream to the engine ended: {detached}")
        except grpc.RpcError as refused:
            code = refused.code()
            # Unreachable is worth retrying (status 1); refused is not (2).
            outcome["status"] = 1 if code == grpc.StatusCode.UNAVAILABLE else 2
            stop.set(f"the engine refused this worker ({code.name if code else 'UNKNOWN'}): {refused.details()}")
        except BaseException as error:  # a bug: say so rather than hang
            outcome["status"] = 2
            stop.set(f"attaching failed: {type(error).__name__}: {error}")

    stop.serving = True
    threading.Thread(target=run, name="mlbridge-attached", daemon=True).start()
    reason = stop.wait()
    # Taken before the stream is ended here, which the serving thread would report too.
    status = outcome["status"]
    if status:
        print(f"mlbridge worker: {reason}", file=sys.stderr, flush=True)
    else:
        _log.info("stopping: %s", reason)
    worker.stop()
    telemetry.shutdown()
    # Calls still running are abandoned, as a spawned worker abandons them.
    _exit_later(1.0, status)
    return status


def _exit_later(seconds: float, status: int = 0) -> None:
    def force() -> None:
        time.sleep(seconds)
        sys.stderr.flush()
        os._exit(status)

    threading.Thread(target=force, name="mlbridge-exit", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
