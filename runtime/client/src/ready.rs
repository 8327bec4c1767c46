//! The line an engine prints on stdout once it serves: this prefix, then its address.
//! Dependency-free so that tools which must not depend on the client crate (the xtask
//! builds before the generated code exists) include this very file.

/// The engine's ready line, before the address it listens on.
pub const ENGINE_READY_PREFIX: &str = "mlbridge engine listening on ";
