//! The mlbridge engine: serves `mlbridge.v1.MLBridge` (sessions, variables, watch, host
//! tools), judges every value against its type and constraints, and runs framework
//! operations on a pool of Python workers. Clients live in `mlbridge-client`.

// `#[tool]` expands to `::mlbridge::...` paths; this makes them resolve inside this crate too.
extern crate self as mlbridge;

pub mod auth;
pub mod builtin_tools;
pub mod callbacks;
pub mod engine;
pub mod glob;
pub mod listen;
pub mod operations;
mod params;
pub mod resources;
pub mod state;
pub mod telemetry;
pub mod tools;
pub mod value;
pub mod workers;

pub use engine::{Engine, EngineBuilder};
pub use listen::{ListenAddr, ServeOptions, ServerTls, serve, serve_with};
pub use mlbridge_client::{BridgeError, ErrorKind, PROTOCOL_VERSION, Result, error};
pub use mlbridge_macros::tool;
pub use workers::{WorkerPool, WorkerPoolConfig};
