//! The mlbridge runtime: the engine that serves `mlbridge.v1.MLBridge` and the address
//! handling shared by the `mlbridge` binary, tests and examples.

// `#[tool]` expands to `::mlbridge::...` paths; this makes them resolve inside this crate too.
extern crate self as mlbridge;

pub mod adapters;
pub mod builtin_tools;
pub mod client;
pub mod engine;
pub mod error;
pub mod glob;
pub mod listen;
pub mod operations;
mod params;
pub mod state;
pub mod tools;
pub mod value;
pub mod workers;

pub use client::{Client, Session, SessionOptions, Write};
pub use engine::{Engine, EngineBuilder};
pub use error::{BridgeError, ErrorKind, Result};
pub use listen::{ListenAddr, serve};
pub use mlbridge_macros::tool;
pub use workers::{WorkerPool, WorkerPoolConfig};

/// The wire protocol version this runtime implements (the proto package).
pub const PROTOCOL_VERSION: &str = "mlbridge.v1";
