//! The `optimizer` resources (`tpe`, `random`, `grid`): not built yet; creating one answers
//! INVALID_ARGUMENT until they are.

use std::collections::HashMap;
use std::sync::Arc;

use mlbridge_proto::mlbridge::v1 as pb;

use super::NativeResource;
use crate::engine::Engine;
use crate::error::{BridgeError, Result};

/// Creates the optimizer `name` over the variables its `config` names.
pub async fn create(
    _engine: &Engine,
    _session_id: &str,
    _resource_id: &str,
    name: &str,
    _config: HashMap<String, pb::Value>,
) -> Result<Arc<dyn NativeResource>> {
    Err(BridgeError::invalid_argument(
        "name",
        format!("optimizer `{name}`: optimizers are not built yet"),
    ))
}
