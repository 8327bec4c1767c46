//! The `optimizer` resources (`tpe`, `random`, `grid`): search over session variables whose
//! types and constraints give the space ([`space`]), candidates drawn by a [`sampler`]
//! deterministically per trial ([`trials`]), each written through an optimization lock and
//! scored by a client's metric callback ([`resource`]).

pub mod config;
pub mod resource;
pub mod sampler;
pub mod space;
pub mod trials;

use std::collections::HashMap;
use std::sync::Arc;

use mlbridge_proto::mlbridge::v1 as pb;

use super::NativeResource;
use crate::engine::Engine;
use crate::error::{BridgeError, Result};

/// The sampler names.
pub const NAMES: &[&str] = &["grid", "random", "tpe"];

/// Creates the optimizer `name` over the variables its `config` names.
///
/// # Errors
///
/// `INVALID_ARGUMENT` for an unknown name or a bad configuration (naming the key or the
/// variable), `VARIABLE_NOT_FOUND`, `CALLBACK_NOT_FOUND` for an unregistered metric,
/// `RESOURCE_NOT_FOUND` for an unknown module.
pub async fn create(
    engine: &Engine,
    session_id: &str,
    resource_id: &str,
    name: &str,
    config: HashMap<String, pb::Value>,
) -> Result<Arc<dyn NativeResource>> {
    if !NAMES.contains(&name) {
        return Err(BridgeError::invalid_argument(
            "name",
            format!(
                "unknown optimizer `{name}`; the engine has: {}",
                NAMES.join(", ")
            ),
        )
        .with("name", name));
    }
    let config = config::Config::parse(config)?;
    let optimizer =
        resource::Optimizer::create(engine, session_id, resource_id, name, config).await?;
    Ok(Arc::new(optimizer))
}
