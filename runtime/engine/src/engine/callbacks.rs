//! Client callbacks: registering and removing them (the calls live in
//! [`crate::callbacks`] and [`Engine::call_callback`]).

#[allow(clippy::wildcard_imports)]
use super::*;

pub(super) async fn register_callback(
    engine: &Engine,
    r: pb::RegisterCallbackRequest,
) -> Result<pb::RegisterCallbackResponse> {
    let session = required("session_id", &r.session_id)?.to_owned();
    engine.state.session(&session).await?;
    let callback = engine.callbacks.register(r)?;
    // A session that ended meanwhile may have been forgotten before this registration.
    if engine.state.session(&session).await.is_err() {
        engine.callbacks.forget_session(&session);
        return Err(BridgeError::session_not_found(&session));
    }
    Ok(pb::RegisterCallbackResponse {
        callback_id: callback.id.clone(),
    })
}

pub(super) async fn unregister_callback(
    engine: &Engine,
    r: pb::UnregisterCallbackRequest,
) -> Result<pb::UnregisterCallbackResponse> {
    let session = required("session_id", &r.session_id)?;
    engine.state.session(session).await?;
    Ok(pb::UnregisterCallbackResponse {
        existed: engine.callbacks.unregister(session, &r.name),
    })
}

pub(super) async fn register_tools(
    engine: &Engine,
    r: pb::RegisterToolsRequest,
) -> Result<pb::RegisterToolsResponse> {
    let host = r.host.unwrap_or_default();
    if host.kind != pb::ToolHostKind::Callback as i32 {
        return Err(BridgeError::invalid_argument(
            "host",
            "only tools served by a client callback (host kind CALLBACK) are registered; \
             worker tools come from the workers' adapters",
        ));
    }
    let session = required("session_id", &r.session_id)?;
    engine.state.session(session).await?;
    let callback = required("host.callback_name", &host.callback_name)?;
    let workers = engine.workers.clone();
    let registered =
        engine
            .callbacks
            .register_tools(session, callback, r.tools, r.replace, |name| {
                engine.tools.specs().iter().any(|spec| spec.name == name)
                    || workers.as_ref().is_some_and(|w| w.tool(name).is_some())
            })?;
    Ok(pb::RegisterToolsResponse { registered })
}
