//! The engine's `MLBridge` service. RPCs not implemented yet answer `UNIMPLEMENTED` through
//! the generated default stubs.

use std::time::SystemTime;

use mlbridge_proto::mlbridge::v1::{PingRequest, PingResponse, ml_bridge_server::MlBridge};
use tonic::{Request, Response, Status};

/// The engine: holds session state and answers `MLBridge` calls.
#[derive(Debug, Clone)]
pub struct Engine {
    id: String,
}

impl Engine {
    /// A new engine with a fresh instance id.
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Engine {
            id: format!("engine-{}-{nanos:x}", std::process::id()),
        }
    }

    /// This engine's instance id, reported by `Ping`.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

#[tonic::async_trait]
impl MlBridge for Engine {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            message: request.into_inner().message,
            server_id: self.id.clone(),
            protocol_version: crate::PROTOCOL_VERSION.to_owned(),
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            server_time: Some(SystemTime::now().into()),
        }))
    }
}
