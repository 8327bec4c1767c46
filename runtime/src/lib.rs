//! mlbridge: the facade over the client (`mlbridge-client`) and the engine
//! (`mlbridge-engine`), and the `mlbridge` binary. A program that only talks to an engine
//! can depend on `mlbridge-client` alone.

pub use mlbridge_client::{
    BridgeError, Client, ENGINE_READY_PREFIX, ErrorKind, LeaseRenewer, OptimizationLock,
    PROTOCOL_VERSION, Result, Session, SessionOptions, WireValue, Write, adapters, client, dial,
    error, optimization, values,
};
pub use mlbridge_engine::{
    Engine, EngineBuilder, ListenAddr, ServeOptions, ServerTls, WorkerPool, WorkerPoolConfig, auth,
    builtin_tools, engine, glob, listen, operations, serve, serve_with, state, telemetry, tool,
    tools, value, workers,
};
