//! The mlbridge client: connect to an engine and use sessions, variables, watch, tools and
//! framework operations from Rust. It holds the error type, the Rust <-> `Value`
//! conversions, [`Client`]/[`Session`] and the bindings the generated adapters use, and
//! nothing of the engine: no state, worker pool or CLI in its dependency tree.

pub mod adapters;
pub mod client;
pub mod dial;
pub mod error;
pub mod optimization;
mod ready;
pub mod values;

pub use client::{Client, InProcessCall, Session, SessionOptions, Write};
pub use error::{BridgeError, ErrorKind, Result};
pub use optimization::{LeaseRenewer, OptimizationLock};
pub use ready::ENGINE_READY_PREFIX;
pub use values::{Bytes, WireValue};

/// The wire protocol version this client speaks (the proto package).
pub const PROTOCOL_VERSION: &str = "mlbridge.v1";
