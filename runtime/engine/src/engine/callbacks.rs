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
