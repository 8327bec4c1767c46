//! The mlbridge runtime: the engine that serves `mlbridge.v1.MLBridge` and the address
//! handling shared by the `mlbridge` binary, tests and examples.

pub mod engine;
pub mod error;
pub mod glob;
pub mod listen;
pub mod state;
pub mod tools;
pub mod value;

pub use engine::{Engine, EngineBuilder};
pub use error::{BridgeError, ErrorKind, Result};
pub use listen::{ListenAddr, serve};

/// The wire protocol version this runtime implements (the proto package).
pub const PROTOCOL_VERSION: &str = "mlbridge.v1";
